#!/usr/bin/python3
"""A small schema registry and message writer for the tests of Avro sources.

  sv_registry.py serve DIR PORT PORTFILE
      Speaks the part of Confluent's schema registry REST API a consumer
      uses, on 127.0.0.1:PORT (0: any free port, written to PORTFILE):
      GET /schemas/ids/{id} answers DIR/{id}.json as it is (the registry's
      reply: {"schema": "...", "schemaType": ...}), or 404 with the
      registry's error body (40403) when there is no such file.  It counts
      the requests per id; GET /requests answers the counts as JSON, so a
      test can check that the worker asks once per id, not per message.

  sv_registry.py encode SPEC OUTDIR
      Writes the messages SPEC (a JSON list) describes, one file each,
      named 00000, 00001, ... in order: {"id": N, "schema": {...},
      "record": {...}} is the record encoded with python3-avro (Debian's
      Apache Avro) in the Confluent wire format (magic byte 0, the id in 4
      bytes big-endian, the body); "truncate": K cuts the last K bytes,
      "magic": M writes another magic byte; {"raw": "hex"} is those bytes.
      Values of logical types are given as JSON numbers or strings and made
      into what the library takes: timestamp-millis/micros as epoch
      milliseconds/microseconds, date as days, decimal as a string.
      {"id": N, "proto": "FILE.proto", "message": "Name", "index": [i, ...],
      "record": {...}} is a Protobuf message instead: FILE.proto (next to
      SPEC) compiled with protoc, the record given as Protobuf's JSON
      mapping (Timestamps as RFC 3339 text), written with python3-protobuf
      after the message-index list (zigzag varints: the count, then the
      indexes; [0] is the single byte 0).
"""
import datetime
import decimal
import http.server
import io
import json
import os
import struct
import sys

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def serve(directory, port, portfile):
    counts = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(status)
            self.send_header('Content-Type', 'application/vnd.schemaregistry.v1+json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            parts = self.path.strip('/').split('/')
            if parts == ['requests']:
                return self.reply(200, counts)
            if len(parts) == 3 and parts[:2] == ['schemas', 'ids'] and parts[2].isdigit():
                counts[parts[2]] = counts.get(parts[2], 0) + 1
                path = os.path.join(directory, parts[2] + '.json')
                if os.path.exists(path):
                    with open(path, 'rb') as f:
                        return self.reply(200, f.read())
                return self.reply(404, {'error_code': 40403, 'message': 'Schema not found'})
            return self.reply(404, {'error_code': 404, 'message': 'HTTP 404 Not Found'})

    httpd = http.server.HTTPServer(('127.0.0.1', int(port)), Handler)
    with open(portfile + '.tmp', 'w') as f:
        f.write(str(httpd.server_address[1]))
    os.rename(portfile + '.tmp', portfile)
    httpd.serve_forever()


def logical(schema, value):
    """value, as JSON gives it, as python3-avro takes it for schema."""
    if value is None:
        return None
    if isinstance(schema, list):  # a union: the first branch that is not null
        return logical([b for b in schema if b != 'null'][0], value)
    if isinstance(schema, dict):
        lt = schema.get('logicalType')
        if lt == 'timestamp-millis':
            return EPOCH + datetime.timedelta(milliseconds=value)
        if lt == 'timestamp-micros':
            return EPOCH + datetime.timedelta(microseconds=value)
        if lt == 'date':
            return datetime.date(1970, 1, 1) + datetime.timedelta(days=value)
        if lt == 'decimal':
            return decimal.Decimal(value)
        if schema.get('type') == 'record':
            return {f['name']: logical(f['type'], value.get(f['name']))
                    for f in schema['fields'] if f['name'] in value}
    return value


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    out = b''
    while n > 0x7f:
        out += bytes([(n & 0x7f) | 0x80])
        n >>= 7
    return out + bytes([n])


def protobuf_message(spec_dir, outdir, m):
    import importlib
    import subprocess
    from google.protobuf import json_format
    gen = os.path.join(outdir, '.protoc')
    os.makedirs(gen, exist_ok=True)
    module = m['proto'][:-len('.proto')] + '_pb2'
    if not os.path.exists(os.path.join(gen, module + '.py')):
        subprocess.run(['protoc', '--proto_path=' + spec_dir, '--python_out=' + gen, m['proto']],
                       check=True)
    if gen not in sys.path:
        sys.path.insert(0, gen)
    cls = importlib.import_module(module)
    for name in m['message'].split('.'):  # a nested message: Outer.Inner
        cls = getattr(cls, name)
    msg = cls()
    json_format.ParseDict(m['record'], msg)
    index = m.get('index', [0])
    header = b'\x00' if index == [0] else zigzag(len(index)) + b''.join(zigzag(i) for i in index)
    return header + msg.SerializeToString()


def encode(spec, outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(spec) as f:
        messages = json.load(f)
    for n, m in enumerate(messages):
        if 'raw' in m:
            data = bytes.fromhex(m['raw'])
        elif 'proto' in m:
            body = protobuf_message(os.path.dirname(os.path.abspath(spec)), outdir, m)
            data = struct.pack('>bI', m.get('magic', 0), m['id']) + body
            if m.get('truncate'):
                data = data[:-m['truncate']]
        else:
            import avro.io
            import avro.schema
            schema = avro.schema.parse(json.dumps(m['schema']))
            body = io.BytesIO()
            avro.io.DatumWriter(schema).write(logical(m['schema'], m['record']),
                                              avro.io.BinaryEncoder(body))
            data = struct.pack('>bI', m.get('magic', 0), m['id']) + body.getvalue()
            if m.get('truncate'):
                data = data[:-m['truncate']]
        with open(os.path.join(outdir, '%05d' % n), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    if sys.argv[1] == 'serve':
        serve(*sys.argv[2:5])
    elif sys.argv[1] == 'encode':
        encode(*sys.argv[2:4])
    else:
        sys.exit('usage: sv_registry.py serve DIR PORT PORTFILE | encode SPEC OUTDIR')
