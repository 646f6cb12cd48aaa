#!/usr/bin/perl
# demo/generate.pl: purchase events for `make demo`, one file per partition.
#
#   generate.pl --out DIR --start-ms MS [--minutes 30] [--users 200] [--partitions 4]
#   generate.pl --out DIR --live --start-ms MS [--count 60]
#
# Writes DIR/p<N>.tsv: one "key<TAB>json" line per Kafka message, in the order
# the messages reach partition N (kcat -P -K '\t' reads them).  The key is the
# user_id, and a user always goes to the same partition.  Prints a short
# description of what it wrote.  Deterministic for a given --seed and --start-ms.
#
# History mode (the default) writes what a shop's apps would have sent over
# --minutes minutes of event time, starting at --start-ms:
#   - purchases from --users users (mobile apps send ISO-8601 times, the web
#     shop epoch milliseconds; an old app version sends no country);
#   - disorder: each message arrives 0-4 s after its event time;
#   - late events (a phone briefly offline): 20-50 s and 80-110 s behind;
#   - too-late events: 10-20 minutes behind (a phone offline for a while);
#   - duplicates: a few messages sent twice (a producer retry);
#   - unreadable messages: truncated JSON, no "ts", "amount_cents":"lots",
#     "ts":"soon".
# Live mode writes a small burst of purchases happening at --start-ms, plus a
# few that happened 70-80 s earlier (they correct already published windows).
#
# Perl core only (POSIX, Getopt::Long): Perl is present wherever PostgreSQL is.
use strict;
use warnings;
use Getopt::Long;
use POSIX qw(floor strftime);

my %o = (minutes => 30, users => 200, partitions => 4, seed => 42, count => 60);
GetOptions(\%o, 'out=s', 'start-ms=i', 'minutes=i', 'users=i', 'partitions=i',
           'seed=i', 'count=i', 'live') && $o{out} && defined $o{'start-ms'}
    or die "usage: $0 --out DIR --start-ms MS [--live] [--minutes N] [--users N] [--partitions N] [--count N]\n";

srand($o{seed} + ($o{live} ? 1 : 0));
my $P = $o{partitions};
my $start = $o{'start-ms'};

# --- users -----------------------------------------------------------------
my @countries = (('US') x 30, ('DE') x 14, ('GB') x 12, ('FR') x 11, ('BR') x 9,
                 ('IN') x 9, ('JP') x 8, ('CA') x 7);
my @users;
for my $i (1 .. $o{users}) {
    my $r = rand();
    my $os = $r < 0.45 ? 'ios' : $r < 0.85 ? 'android' : 'web';
    my $app = $os eq 'web' ? undef
            : rand() < 0.06 ? '4.9.0'          # old app: sends no country
            : (qw(5.2.1 5.3.0 5.3.2))[int rand 3];
    my $id = sprintf 'u%03d', $i;
    push @users, { id => $id, os => $os, app => $app,
                   country => $countries[int rand @countries],
                   partition => key_partition($id) };
}

# A stand-in for a producer's partitioner: a hash of the key, modulo.
sub key_partition {
    my $h = 0;
    $h = ($h * 31 + ord $_) % 1000003 for split //, shift;
    return $h % $P;
}

sub iso {
    my $ms = shift;
    return strftime('%Y-%m-%dT%H:%M:%S', gmtime floor($ms / 1000)) . sprintf('.%03dZ', $ms % 1000);
}

sub amount {
    # Mostly a few dollars to a few hundred; prices end in 99.
    my $c = int(exp(6 + rand(2.5) + rand(2)));
    return int($c / 100) * 100 + 99;
}

sub payload {
    my ($u, $ev) = @_;
    my @f = (sprintf('"event_id":"%s"', $ev->{id}), sprintf('"user_id":"%s"', $u->{id}));
    push @f, sprintf('"country":"%s"', $u->{country}) unless ($u->{app} // '') eq '4.9.0';
    push @f, sprintf('"amount_cents":%d', $ev->{amount});
    push @f, $u->{os} eq 'web' ? sprintf('"ts":%d', $ev->{ts}) : sprintf('"ts":"%s"', iso($ev->{ts}));
    push @f, defined $u->{app}
        ? sprintf('"device":{"os":"%s","app_version":"%s"}', $u->{os}, $u->{app})
        : sprintf('"device":{"os":"%s","browser":"%s"}', $u->{os}, (qw(chrome firefox safari))[ord(substr $u->{id}, -1) % 3]);
    return '{' . join(',', @f) . '}';
}

# --- events ------------------------------------------------------------------
my @events;   # { u, ts, arrival, id, amount, line? }
my $seq = 0;

if (!$o{live}) {
    my $span = $o{minutes} * 60_000;
    my @raw;
    for my $u (@users) {
        my $n = 30 + int rand 61;
        push @raw, { u => $u, ts => $start + int rand $span, amount => amount() } for 1 .. $n;
    }
    @raw = sort { $a->{ts} <=> $b->{ts} } @raw;
    for my $ev (@raw) {
        $ev->{id} = sprintf 'ord-%06d', ++$seq;
        $ev->{arrival} = $ev->{ts} + int rand 4000;
    }
    my (%special, %count);
    my $pick = sub {   # a not yet special event with lo <= ts - start < hi
        my ($kind, $lo, $hi, $delay_lo, $delay_hi) = @_;
        for (1 .. 10_000) {
            my $ev = $raw[int rand @raw];
            my $off = $ev->{ts} - $start;
            next if $special{$ev->{id}} || $off < $lo || $off >= $hi;
            $special{$ev->{id}} = $kind;
            $ev->{arrival} = $ev->{ts} + $delay_lo + int rand($delay_hi - $delay_lo);
            $count{$kind}++;
            return $ev;
        }
        die "generate.pl: could not place a $kind event\n";
    };
    $pick->('late', 120_000, $span - 60_000, 20_000, 50_000) for 1 .. 20;
    $pick->('later', 120_000, $span - 120_000, 80_000, 110_000) for 1 .. 8;
    $pick->('too_late', 60_000, $span - 1_260_000, 600_000, 1_200_000) for 1 .. 6;
    @events = @raw;
    for (1 .. 15) {   # producer retries: the same message again, 0.5-3 s later
        my $ev = $pick->('dup', 60_000, $span - 60_000, 0, 1000);
        push @events, { %$ev, arrival => $ev->{arrival} + 500 + int rand 2500 };
    }
    # Unreadable messages, somewhere in the middle of the stream.
    my @bad = (
        sub { my $p = payload($_[0], $_[1]); substr($p, 0, int(length($p) * 0.6)) },   # truncated JSON
        sub { my $p = payload($_[0], $_[1]); $p =~ s/,"ts":[^,]+//; $p },             # no "ts"
        sub { my $p = payload($_[0], $_[1]); $p =~ s/"amount_cents":\d+/"amount_cents":"lots"/; $p },
        sub { my $p = payload($_[0], $_[1]); $p =~ s/"ts":("[^"]*"|\d+)/"ts":"soon"/; $p },
    );
    for my $make (@bad) {
        my $u = $users[int rand @users];
        my $ts = $start + 300_000 + int rand($span - 600_000);
        my $ev = { u => $u, ts => $ts, arrival => $ts + 1000, amount => amount(),
                   id => sprintf('ord-%06d', 900_000 + ++$count{bad}) };
        $ev->{line} = $make->($u, $ev);
        push @events, $ev;
    }
    printf "%d purchases by %d users over %d minutes of event time (%s to %s UTC),\n",
        scalar(@raw), scalar(@users), $o{minutes}, substr(iso($start), 11, 5), substr(iso($start + $span), 11, 5);
    printf "in %d partitions keyed by user_id, with disorder of up to 4 s;\n", $P;
    printf "%d late events 20-50 s behind, %d events 80-110 s behind, %d too late (10-20 min behind);\n",
        $count{late}, $count{later}, $count{too_late};
    printf "%d messages sent twice (producer retries); %d unreadable messages\n", $count{dup}, $count{bad};
    printf "(truncated JSON, no \"ts\", \"amount_cents\":\"lots\", \"ts\":\"soon\").\n";
} else {
    my ($now, $late) = (0, 0);
    for my $i (1 .. $o{count}) {
        # Every partition gets some, so the watermark (a minimum) moves on.
        my @pool = grep { $_->{partition} == ($i - 1) % $P } @users;
        my $u = $pool[int rand @pool];
        my $is_late = $i % 12 == 0;
        my $ts = $is_late ? $start - 70_000 - int rand 10_000 : $start - int rand 3000;
        $is_late ? $late++ : $now++;
        push @events, { u => $u, ts => $ts, arrival => $start + $i, amount => amount(),
                        id => sprintf('live-%s-%04d', $start, $i) };
    }
    printf "%d purchases happening now (%s UTC), %d from 70-80 s ago, in all %d partitions.\n",
        $now, substr(iso($start), 11, 8), $late, $P;
}

# --- files -------------------------------------------------------------------
my @fh;
for my $p (0 .. $P - 1) {
    open $fh[$p], '>', "$o{out}/p$p.tsv" or die "generate.pl: $o{out}/p$p.tsv: $!\n";
}
my $n = 0;
for my $ev (sort { $a->{arrival} <=> $b->{arrival} || $a->{id} cmp $b->{id} } @events) {
    my $line = $ev->{line} // payload($ev->{u}, $ev);
    print { $fh[$ev->{u}{partition}] } "$ev->{u}{id}\t$line\n";
    $n++;
}
close $_ or die "generate.pl: $!\n" for @fh;
