/*
 * sv_mockbroker - standalone Kafka broker for pg_streamview tests and demo.
 *
 * Runs librdkafka's in-process mock cluster (rdkafka_mock.h) until it gets
 * SIGTERM, SIGINT or SIGHUP.  The bootstrap address is written atomically to
 * the file given with --bootstrap-file and printed on stdout.
 *
 * usage: sv_mockbroker --bootstrap-file PATH [--brokers N]
 *                      [--topic NAME:PARTITIONS]...
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 64

struct topic_spec
{
	char   *name;
	int		partitions;
};

static const char *progname = "sv_mockbroker";

static void
usage(FILE *out)
{
	fprintf(out,
			"usage: %s --bootstrap-file PATH [--brokers N] "
			"[--topic NAME:PARTITIONS]...\n",
			progname);
}

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", progname);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static int
parse_int(const char *s, int min, int max, int *out)
{
	char   *end;
	long	v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int) v;
	return 0;
}

/* Write content + "\n" to path.tmp, fsync, rename to path. */
static int
write_file_atomic(const char *path, const char *content)
{
	char		tmp[PATH_MAX];
	int			fd;
	size_t		len = strlen(content);
	size_t		off = 0;
	char	   *buf;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp))
	{
		errno = ENAMETOOLONG;
		return -1;
	}
	buf = malloc(len + 2);
	if (buf == NULL)
		return -1;
	memcpy(buf, content, len);
	buf[len++] = '\n';
	buf[len] = '\0';

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
	{
		free(buf);
		return -1;
	}
	while (off < len)
	{
		ssize_t		n = write(fd, buf + off, len - off);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t) n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0)
	{
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	free(buf);
	return 0;

fail:
	{
		int			save = errno;

		if (fd >= 0)
			close(fd);
		unlink(tmp);
		free(buf);
		errno = save;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	const char *bootstrap_file = NULL;
	int			nbrokers = 1;
	struct topic_spec topics[MAX_TOPICS];
	int			ntopics = 0;
	sigset_t	sigs;
	int			sig;
	int			rc;
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	const char *bootstraps;
	int			i;

	for (i = 1; i < argc; i++)
	{
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc)
		{
			usage(stderr);
			die("missing argument for option or unknown option \"%s\"", a);
		}
		if (strcmp(a, "--bootstrap-file") == 0)
			bootstrap_file = argv[++i];
		else if (strcmp(a, "--brokers") == 0)
		{
			if (parse_int(argv[++i], 1, 64, &nbrokers) != 0)
				die("invalid --brokers value \"%s\" (expected 1..64)", argv[i]);
		}
		else if (strcmp(a, "--topic") == 0)
		{
			char	   *spec = argv[++i];
			char	   *colon = strrchr(spec, ':');

			if (ntopics >= MAX_TOPICS)
				die("too many --topic options (max %s)", "64");
			if (colon == NULL || colon == spec)
				die("invalid --topic \"%s\" (expected NAME:PARTITIONS)", spec);
			*colon = '\0';
			if (parse_int(colon + 1, 1, 100000, &topics[ntopics].partitions) != 0)
			{
				*colon = ':';
				die("invalid partition count in --topic \"%s\"", spec);
			}
			topics[ntopics].name = spec;
			ntopics++;
		}
		else
		{
			usage(stderr);
			die("unknown option \"%s\"", a);
		}
	}
	if (bootstrap_file == NULL)
	{
		usage(stderr);
		die("%s", "--bootstrap-file is required");
	}

	/*
	 * Block the termination signals before any librdkafka thread exists so
	 * that all of them inherit the mask and only sigwait() below sees them.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	rc = pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (rc != 0)
		die("pthread_sigmask failed: %s", strerror(rc));

	/* A producer that connects nowhere; it only hosts the mock cluster. */
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "client.id", "sv_mockbroker",
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		die("rd_kafka_conf_set failed: %s", errstr);
	/* hide the "No bootstrap.servers configured" notice; keep warnings */
	if (rd_kafka_conf_set(conf, "log_level", "4",
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		die("rd_kafka_conf_set failed: %s", errstr);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		die("rd_kafka_new failed: %s", errstr);
	}

	mc = rd_kafka_mock_cluster_new(rk, nbrokers);
	if (mc == NULL)
	{
		rd_kafka_destroy(rk);
		die("%s", "rd_kafka_mock_cluster_new failed");
	}

	for (i = 0; i < ntopics; i++)
	{
		rd_kafka_resp_err_t err;

		err = rd_kafka_mock_topic_create(mc, topics[i].name,
										 topics[i].partitions, 1);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			fprintf(stderr, "%s: creating topic \"%s\" failed: %s\n",
					progname, topics[i].name, rd_kafka_err2str(err));
			rd_kafka_mock_cluster_destroy(mc);
			rd_kafka_destroy(rk);
			return 1;
		}
	}

	bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
	if (bootstraps == NULL || *bootstraps == '\0')
	{
		rd_kafka_mock_cluster_destroy(mc);
		rd_kafka_destroy(rk);
		die("%s", "mock cluster has no bootstrap address");
	}

	if (write_file_atomic(bootstrap_file, bootstraps) != 0)
	{
		int			save = errno;

		rd_kafka_mock_cluster_destroy(mc);
		rd_kafka_destroy(rk);
		fprintf(stderr, "%s: cannot write bootstrap file \"%s\": %s\n",
				progname, bootstrap_file, strerror(save));
		return 1;
	}

	printf("%s\n", bootstraps);
	fflush(stdout);

	for (;;)
	{
		rc = sigwait(&sigs, &sig);
		if (rc == 0)
			break;
		if (rc != EINTR)
		{
			fprintf(stderr, "%s: sigwait failed: %s\n", progname, strerror(rc));
			break;
		}
	}

	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
