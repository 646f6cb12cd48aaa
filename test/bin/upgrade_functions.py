#!/usr/bin/env python3
"""Print the functions an update script must (re)create.

    test/bin/upgrade_functions.py sql/pg_streamview--0.1.sql sql/pg_streamview--0.2.sql

Compares the CREATE FUNCTION statements of two install scripts and prints,
as CREATE OR REPLACE FUNCTION, every function that is new or whose text
changed, in the order of the new script; functions that are gone are listed
as comments.  A developer's aid for writing pg_streamview--A--B.sql by
hand: t/005_upgrade.pl is what proves the result equals a fresh install.
"""
import re
import sys


def statements(text):
    """Split SQL into statements, minding quotes, dollar quotes and comments."""
    out, cur, quote, i = [], [], None, 0
    while i < len(text):
        if quote is None and text.startswith('--', i):
            j = text.find('\n', i)
            j = len(text) if j < 0 else j
            cur.append(text[i:j])
            i = j
            continue
        c = text[i]
        if quote in (None, "'") and c == "'":
            quote = None if quote else "'"      # '' inside a literal toggles twice
            cur.append(c)
            i += 1
            continue
        m = re.compile(r'\$[A-Za-z_]*\$').match(text, i)
        if m and quote != "'":
            tag = m.group(0)
            if quote is None:
                quote = tag
            elif quote == tag:
                quote = None
            cur.append(tag)
            i = m.end()
            continue
        cur.append(c)
        i += 1
        if c == ';' and quote is None:
            out.append(''.join(cur).strip())
            cur = []
    return out


def comments(path):
    """COMMENT ON FUNCTION statements, by function name."""
    result = {}
    for st in statements(open(path).read()):
        m = re.match(r'COMMENT ON FUNCTION (streamview(?:_internal)?\.\w+)\(', st)
        if m:
            result.setdefault(m.group(1), []).append(st)
    return result


def functions(path):
    result = {}
    for st in statements(open(path).read()):
        lines = st.split('\n')
        while lines and (lines[0].lstrip().startswith('--') or not lines[0].strip()):
            lines.pop(0)        # the comments before the statement
        body = '\n'.join(lines)
        m = re.search(r'CREATE FUNCTION (streamview(?:_internal)?\.\w+)\s*\(', body)
        if not m or not body.lstrip().startswith('CREATE FUNCTION'):
            continue
        # the argument list: to the matching parenthesis
        depth, j = 0, m.end() - 1
        while True:
            depth += {'(': 1, ')': -1}.get(body[j], 0)
            if depth == 0:
                break
            j += 1
        args = re.sub(r'\s+', ' ', body[m.end():j])
        types = re.sub(r"\s+DEFAULT\s+('[^']*'|[^,]+)", '', args)
        types = ', '.join(a.strip().split(' ', 1)[-1] if a.strip().split(' ', 1)[0] not in
                          ('text', 'int', 'bool', 'jsonb', 'interval', 'bigint', 'regrole', 'name',
                           'timestamptz', 'regclass') else a.strip()
                          for a in types.split(',')) if types.strip() else ''
        result[m.group(1) + '(' + types + ')'] = body.strip()
    return result


old, new = functions(sys.argv[1]), functions(sys.argv[2])
notes = comments(sys.argv[2])
for key, text in new.items():
    if old.get(key) != text:
        print(text.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION', 1))
        for c in notes.get(key.split('(')[0], []):
            print(c)
        print()
for key in old:
    if key not in new:
        print('-- gone: ' + key)
# as at the end of an install script: functions are the dispatcher's only
print('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview FROM PUBLIC;')
print('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview_internal FROM PUBLIC;')
print('GRANT EXECUTE ON FUNCTION streamview.tumble(timestamptz, interval),')
print('                          streamview.hop(timestamptz, interval, interval),')
print('                          streamview.tumble(timestamptz, interval, text, timestamp),')
print('                          streamview.hop(timestamptz, interval, interval, text, timestamp) TO PUBLIC;')
