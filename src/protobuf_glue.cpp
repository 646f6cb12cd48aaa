/*-------------------------------------------------------------------------
 *
 * protobuf_glue.cpp
 *	  libprotobuf (C++) behind a C interface, for format_protobuf.c.
 *
 * The registry hands out Protobuf schemas as .proto text, which only
 * libprotobuf's own compiler (compiler::Parser, in libprotoc) reads:
 * protobuf-c's runtime needs descriptors compiled ahead.  So the text is
 * parsed here into a DescriptorPool (with the well-known
 * google/protobuf/timestamp.proto and friends available to import), and
 * messages are decoded with DynamicMessage.
 *
 * Nothing of PostgreSQL is used in this file, and nothing of C++ leaks out:
 * every entry point catches every exception and returns an error text
 * instead; results are handed back in malloc'd memory that the C side
 * copies and frees (sv_pb_free_result).  No palloc here: an ERROR's
 * longjmp must never cross C++ frames.
 *
 *-------------------------------------------------------------------------
 */
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/compiler/parser.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/wrappers.pb.h>

#include "protobuf_glue.h"

namespace pb = google::protobuf;

/* Nesting a message may have: libprotobuf's own default. */
#define SV_PB_RECURSION_LIMIT 64

struct SvPbSchema
{
	pb::DescriptorPool pool;
	const pb::FileDescriptor *file = nullptr;
	pb::DynamicMessageFactory factory;
};

namespace
{

/* Collects the parser's and the pool's complaints into one text. */
class Errors : public pb::io::ErrorCollector, public pb::DescriptorPool::ErrorCollector
{
public:
	std::string text;

	void AddError(int line, int column, const std::string &message) override
	{
		if (text.size() < 1000)
			text += (text.empty() ? "" : "; ") + std::string("line ") + std::to_string(line + 1) +
				": " + message;
	}
	void AddError(const std::string &filename, const std::string &element_name,
				  const pb::Message *descriptor, ErrorLocation location,
				  const std::string &message) override
	{
		if (text.size() < 1000)
			text += (text.empty() ? "" : "; ") + element_name + ": " + message;
	}
};

void
set_error(char *errbuf, int errlen, const std::string &what)
{
	snprintf(errbuf, errlen, "%s", what.c_str());
}

/* A well-known type's file, so that the schema may import it. */
void
add_well_known(pb::DescriptorPool &pool, const pb::FileDescriptor *file)
{
	pb::FileDescriptorProto proto;

	file->CopyTo(&proto);
	pool.BuildFile(proto);
}

/* Zigzag varint of the message-index list. */
bool
read_varint(pb::io::CodedInputStream &in, int64_t *value)
{
	uint64_t raw;

	if (!in.ReadVarint64(&raw))
		return false;
	*value = (int64_t) (raw >> 1) ^ -(int64_t) (raw & 1);
	return true;
}

void
put_text(SvPbValue *v, int kind, const std::string &s)
{
	v->kind = kind;
	v->text = (char *) malloc(s.size() + 1);
	if (v->text == nullptr)
		throw std::bad_alloc();
	memcpy(v->text, s.data(), s.size());
	v->text[s.size()] = '\0';
	v->len = s.size();
}

/* The scalar of field f of message m, as format_protobuf.c takes it. */
void
leaf(const pb::Message &m, const pb::FieldDescriptor *f, SvPbValue *v)
{
	const pb::Reflection *r = m.GetReflection();

	if (f->is_repeated())
	{
		v->kind = SV_PB_NOT_SCALAR;
		return;
	}
	if (f->has_presence() && !r->HasField(m, f))
	{
		v->kind = SV_PB_NULL;
		return;
	}
	switch (f->cpp_type())
	{
		case pb::FieldDescriptor::CPPTYPE_INT32:
			v->kind = SV_PB_INT;
			v->number = r->GetInt32(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_INT64:
			v->kind = SV_PB_INT;
			v->number = r->GetInt64(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_UINT32:
			v->kind = SV_PB_INT;
			v->number = r->GetUInt32(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_UINT64:
			v->kind = SV_PB_UINT;
			v->unumber = r->GetUInt64(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_DOUBLE:
			v->kind = SV_PB_DOUBLE;
			v->real = r->GetDouble(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_FLOAT:
			v->kind = SV_PB_FLOAT;
			v->real = r->GetFloat(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_BOOL:
			v->kind = SV_PB_BOOL;
			v->number = r->GetBool(m, f);
			break;
		case pb::FieldDescriptor::CPPTYPE_ENUM:
			{
				int			number = r->GetEnumValue(m, f);
				const pb::EnumValueDescriptor *e = f->enum_type()->FindValueByNumber(number);

				/* an open enum's number the schema does not name: the number */
				if (e == nullptr)
				{
					v->kind = SV_PB_INT;
					v->number = number;
				}
				else
					put_text(v, SV_PB_STRING, e->name());
				break;
			}
		case pb::FieldDescriptor::CPPTYPE_STRING:
			{
				std::string scratch;
				const std::string &s = r->GetStringReference(m, f, &scratch);

				put_text(v, f->type() == pb::FieldDescriptor::TYPE_BYTES ? SV_PB_BYTES : SV_PB_STRING, s);
				break;
			}
		case pb::FieldDescriptor::CPPTYPE_MESSAGE:
			{
				const pb::Message &sub = r->GetMessage(m, f);
				const pb::Descriptor *d = sub.GetDescriptor();

				if (d->full_name() == "google.protobuf.Timestamp")
				{
					const pb::Reflection *sr = sub.GetReflection();

					v->kind = SV_PB_TIMESTAMP;
					v->number = sr->GetInt64(sub, d->FindFieldByName("seconds"));
					v->nanos = sr->GetInt32(sub, d->FindFieldByName("nanos"));
				}
				else
					v->kind = SV_PB_NOT_SCALAR;
				break;
			}
	}
}

}								/* namespace */

extern "C" SvPbSchema *
sv_pb_compile(const char *text, int len, char *errbuf, int errlen)
{
	/*
	 * libprotobuf logs what it finds wrong with a message (invalid UTF-8 in
	 * a string, say) to stderr, the server's log: a hostile topic would
	 * fill it.  The dead letter says it instead.
	 */
	static bool quiet = false;

	if (!quiet)
	{
		pb::SetLogHandler(nullptr);
		quiet = true;
	}
	try
	{
		std::unique_ptr<SvPbSchema> s(new SvPbSchema());
		pb::FileDescriptorProto proto;
		pb::io::ArrayInputStream input(text, len);
		Errors errors;
		pb::io::Tokenizer tokenizer(&input, &errors);
		pb::compiler::Parser parser;

		parser.RecordErrorsTo(&errors);
		if (!parser.Parse(&tokenizer, &proto) || !errors.text.empty())
		{
			set_error(errbuf, errlen, "the .proto text does not parse: " + errors.text);
			return nullptr;
		}
		proto.set_name("schema.proto");
		add_well_known(s->pool, pb::Timestamp::descriptor()->file());
		add_well_known(s->pool, pb::Duration::descriptor()->file());
		add_well_known(s->pool, pb::Any::descriptor()->file());
		add_well_known(s->pool, pb::Struct::descriptor()->file());
		add_well_known(s->pool, pb::Int64Value::descriptor()->file());
		for (const std::string &dep : proto.dependency())
			if (s->pool.FindFileByName(dep) == nullptr)
			{
				set_error(errbuf, errlen, "it imports \"" + dep + "\", which is not a well-known type's file");
				return nullptr;
			}
		s->file = s->pool.BuildFileCollectingErrors(proto, &errors);
		if (s->file == nullptr)
		{
			set_error(errbuf, errlen, "the schema is not valid: " + errors.text);
			return nullptr;
		}
		if (s->file->message_type_count() == 0)
		{
			set_error(errbuf, errlen, "the schema defines no message");
			return nullptr;
		}
		return s.release();
	}
	catch (const std::exception &e)
	{
		set_error(errbuf, errlen, std::string("libprotobuf: ") + e.what());
	}
	catch (...)
	{
		set_error(errbuf, errlen, "libprotobuf failed");
	}
	return nullptr;
}

extern "C" void
sv_pb_free_schema(SvPbSchema *schema)
{
	delete schema;
}

/*
 * Decode a body (after the wire format's 5 bytes): the message-index list,
 * then the message of that type; then find each column along its path.
 * Returns the values (malloc'd; sv_pb_free_result), or NULL with errbuf set
 * when the body cannot be read.
 */
extern "C" SvPbValue *
sv_pb_decode(SvPbSchema *s, const uint8_t *body, int len, int ncolumns,
			 const int *npath, char **const *paths, char *errbuf, int errlen)
{
	SvPbValue  *values = nullptr;

	try
	{
		pb::io::CodedInputStream in(body, len);
		int64_t		count;
		const pb::Descriptor *d = nullptr;

		/* the message-index list: its length, then the indexes; [0] is written 0 */
		if (!read_varint(in, &count) || count < 0 || count > 64)
		{
			set_error(errbuf, errlen, "the message-index list is not valid");
			return nullptr;
		}
		if (count == 0)
			d = s->file->message_type(0);
		for (int64_t i = 0; i < count; i++)
		{
			int64_t		index;
			int			n = d == nullptr ? s->file->message_type_count() : d->nested_type_count();

			if (!read_varint(in, &index) || index < 0 || index >= n)
			{
				set_error(errbuf, errlen, "the message-index list names no message of the schema");
				return nullptr;
			}
			d = d == nullptr ? s->file->message_type((int) index) : d->nested_type((int) index);
		}

		std::unique_ptr<pb::Message> m(s->factory.GetPrototype(d)->New());
		int			offset = in.CurrentPosition();
		pb::io::CodedInputStream msg(body + offset, len - offset);

		msg.SetRecursionLimit(SV_PB_RECURSION_LIMIT);
		if (!m->MergeFromCodedStream(&msg) || !msg.ConsumedEntireMessage() || !m->IsInitialized())
		{
			set_error(errbuf, errlen, "the body is not a valid " + d->full_name() + " message");
			return nullptr;
		}

		values = (SvPbValue *) calloc(ncolumns > 0 ? ncolumns : 1, sizeof(SvPbValue));
		if (values == nullptr)
			throw std::bad_alloc();
		for (int c = 0; c < ncolumns; c++)
		{
			const pb::Message *cur = m.get();
			SvPbValue  *v = &values[c];

			v->kind = SV_PB_MISSING;
			for (int i = 0; i < npath[c]; i++)
			{
				const pb::FieldDescriptor *f = cur->GetDescriptor()->FindFieldByName(paths[c][i]);

				if (f == nullptr)
					break;		/* missing */
				if (i == npath[c] - 1)
				{
					leaf(*cur, f, v);
					break;
				}
				if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated())
					break;		/* a path through a scalar or a list: missing */
				if (!cur->GetReflection()->HasField(*cur, f))
				{
					v->kind = SV_PB_NULL;	/* an absent message: its fields are null */
					break;
				}
				cur = &cur->GetReflection()->GetMessage(*cur, f);
			}
		}
		return values;
	}
	catch (const std::exception &e)
	{
		set_error(errbuf, errlen, std::string("libprotobuf: ") + e.what());
	}
	catch (...)
	{
		set_error(errbuf, errlen, "libprotobuf failed");
	}
	if (values != nullptr)
		sv_pb_free_result(values, ncolumns);
	return nullptr;
}

extern "C" void
sv_pb_free_result(SvPbValue *values, int ncolumns)
{
	for (int c = 0; c < ncolumns; c++)
		free(values[c].text);
	free(values);
}
