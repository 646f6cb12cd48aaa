-- pg_streamview 0.1 → 0.2.
--
-- Released scripts are never edited: every change that 0.2 makes to the
-- catalog and to the functions of 0.1 is made here, in the same words as in
-- pg_streamview--0.2.sql, so that an updated install and a fresh one are the
-- same (t/005_upgrade.pl compares them object by object).

\echo Use "ALTER EXTENSION pg_streamview UPDATE TO '0.2'" to load this file. \quit
