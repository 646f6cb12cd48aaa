-- Formats at the SQL surface: format and schema_registry as create_source
-- takes them, what it refuses and why, and where the registry's credentials
-- show (as other secrets: to the source's owner only, ******** in the
-- history).  Decoding Avro is tested with a broker and a registry, in
-- t/031_avro.pl.
CREATE EXTENSION IF NOT EXISTS pg_streamview;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      format => 'xml') $$) AS unknown_format;
SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      format => NULL) $$) AS null_format;
SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      format => 'avro') $$) AS avro_without_registry;
SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      schema_registry => 'http://r:8081') $$) AS json_with_registry;
SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      format => 'avro', schema_registry => 'ftp://r:8081') $$) AS not_http;
SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      format => 'avro', schema_registry => 'http://user:pw@r:8081') $$) AS credentials_in_url;
SELECT pg_temp.err($$ SELECT streamview.create_source('f1', 'b:9092', 't', '{"ts":"timestamptz"}', 'ts',
                                                      options => '{"schema.registry.password":"x"}') $$) AS json_with_credentials;

-- An Avro source, with the registry's credentials among its options.
SELECT streamview.create_source('f_avro', 'b:9092', 't',
                                '{"ts":"timestamptz","user":{"type":"text","path":"who.name"}}', 'ts',
                                format => 'avro', schema_registry => 'http://registry.example:8081/',
                                options => '{"schema.registry.username":"u","schema.registry.password":"secret"}')
       IS NOT NULL AS created;
SELECT streamview.create_source('f_proto', 'b:9092', 't2', '{"ts":"timestamptz"}', 'ts',
                                format => 'protobuf', schema_registry => 'https://registry.example/api')
       IS NOT NULL AS created;
SELECT name, format, schema_registry, options FROM streamview.source_list ORDER BY name;
SELECT format, count(*) FROM streamview.sources GROUP BY 1 ORDER BY 1;

-- Another role sees the format and the registry, not the credentials.
CREATE ROLE sv_formats_other;
SET ROLE sv_formats_other;
SELECT name, format, schema_registry, options FROM streamview.source_list ORDER BY name;
RESET ROLE;

-- A new password shows in the history as ********, as sasl.password does.
SELECT streamview.alter_source('f_avro', options => '{"schema.registry.password":"other"}') IS NOT NULL AS altered;
SELECT changes FROM streamview.source_changes WHERE source_name = 'f_avro';

SELECT streamview.drop_source('f_avro');
SELECT streamview.drop_source('f_proto');
DROP ROLE sv_formats_other;
