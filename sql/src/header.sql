-- pg_streamview 0.2: materialized stream views over Kafka topics.
--
-- Catalog tables live in schema streamview (the extension's schema, created
-- by CREATE EXTENSION).  Data tables and the user-facing views live in the
-- schema the user chose, owned by the user.  Every object referenced here is
-- schema-qualified, and every function pins its search_path, so that nothing
-- a user puts on their search_path can change what this script does.

\echo Use "CREATE EXTENSION pg_streamview" to load this file. \quit
