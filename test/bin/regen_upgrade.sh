#!/usr/bin/env bash
# Rewrite the generated part of sql/pg_streamview--0.1--0.2.sql: the
# functions that are new or changed in 0.2, between the two marker lines,
# from the two install scripts.  The hand-written parts before (catalog
# changes) and after (what needs the new functions) are kept as they are;
# the comments on the catalog (sql/src/12_comments.sql) are copied at the
# end.  t/005_upgrade.pl checks that the result equals a fresh install.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s sql/pg_streamview--0.2.sql
python3 - <<'PY'
import subprocess
f = 'sql/pg_streamview--0.1--0.2.sql'
begin = '-- Functions new or changed in 0.2 (test/bin/regen_upgrade.sh writes what follows)\n'
end = '-- End of the generated functions; hand-written again below.\n'
text = open(f).read()
head = text.split(begin)[0].rstrip('\n') + '\n\n'
tail = text.split(end)[1] if end in text else '\n'
gen = subprocess.run(['python3', 'test/bin/upgrade_functions.py', 'sql/pg_streamview--0.1.sql',
                      'sql/pg_streamview--0.2.sql'], check=True, capture_output=True, text=True).stdout
# The comments on the catalog, last: every object they describe exists by
# then.  COMMENT ON replaces, so the whole file is repeated as it is.
comments = '-- Comments on the catalog (test/bin/regen_upgrade.sh copies sql/src/12_comments.sql here)\n'
tail = tail.split(comments)[0].rstrip('\n') + '\n\n'
open(f, 'w').write(head + begin + '\n' + gen + '\n' + end + tail + comments
                  + open('sql/src/12_comments.sql').read())
PY
