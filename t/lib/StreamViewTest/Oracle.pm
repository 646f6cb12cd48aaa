# StreamViewTest::Oracle: an independent Perl model of the contract in
# ../../../DESIGN.md's terms (how messages are read, duplicates, too-late
# events, windows, aggregates, counters, dead letters, the watermark),
# written from the design, not from the C code.  Tests compare the
# extension's tables with it.
package StreamViewTest::Oracle;

use strict;
use warnings;
use JSON::PP;
use Time::Local qw(timegm);


# oracle_new(
#   columns => {name => "type" | {type, path, default, required}},
#   event_time => 'ts', event_id => 'event_id' | undef,
#   max_out_of_orderness_ms => 5000,
#   views => [ {name, lateness_ms, window => ['tumble', size_ms] | ['hop', size_ms, slide_ms]
#                 | ['spans', sub { my ($t) = @_; ([start, end], ...) }],
#               keys => [col...], where => sub { my ($row) = @_; ... } | undef,
#               aggs => [[out_name, kind, col], ...],
#               error => sub { my ($row) = @_; true if the query fails for it } | undef} ])
# kinds: count_star, count, sum, min, max, avg, bool_and, bool_or; col is a
# column name or a sub computing the aggregated expression from the row
sub new
{
	my ($class, %o) = @_;
	my %cols;
	for my $c (keys %{ $o{columns} })
	{
		my $spec = $o{columns}{$c};
		$spec = { type => $spec } unless ref $spec;
		$cols{$c} = {
			type     => $spec->{type},
			path     => [ split /\./, ($spec->{path} // $c) ],
			default  => $spec->{default},
			required => $spec->{required} ? 1 : 0,
		};
	}
	my $self = {
		cols      => \%cols,
		et        => $o{event_time},
		eid       => $o{event_id},
		mooo      => $o{max_out_of_orderness_ms} * 1000,
		views     => $o{views},
		parts     => {},     # p -> {max_et, n}
		dead      => [],     # unreadable: [p, offset, reason]
		vstate    => {},     # view -> {groups, seen, counters, too_late}
	};
	for my $v (@{ $o{views} })
	{
		$v->{_lateness_us} = $v->{lateness_ms} * 1000;
		$self->{vstate}{ $v->{name} } =
		  { groups => {}, seen => {}, counters => {}, too_late => [], query_errors => [] };
	}
	return bless $self, $class;
}


my $json = JSON::PP->new->allow_nonref;

# Read one payload: (\%row, undef) or (undef, reason)
sub read_message
{
	my ($self, $payload) = @_;
	return (undef, 'invalid_json') unless defined $payload;
	my $doc = eval { $json->decode($payload) };
	return (undef, 'invalid_json') if $@ || ref($doc) ne 'HASH';
	my %row;
	# Every column is checked; if several are bad the generator never mixes
	# reasons, so the order does not matter.
	my $reason;
	for my $c (sort keys %{ $self->{cols} })
	{
		my $spec = $self->{cols}{$c};
		my $v    = $doc;
		for my $k (@{ $spec->{path} })
		{
			if (ref $v eq 'HASH' && exists $v->{$k}) { $v = $v->{$k} }
			else { $v = undef; last }
		}
		if (!defined $v)
		{
			if ($spec->{required} || $c eq $self->{et})
			{
				$reason //= 'missing_field';
				next;
			}
			$row{$c} = defined $spec->{default} ? convert($spec->{type}, $spec->{default}, 1) : undef;
			next;
		}
		my $x = convert($spec->{type}, $v, 0);
		if (!defined $x)
		{
			$reason //= 'invalid_value';
			next;
		}
		$row{$c} = $x;
	}
	# Event time is checked, not trusted: the years 1 to 9999 (UTC) only.
	# (max_future needs the broker's timestamp, which the oracle does not
	# see: the generator's events are all in the past.)
	my $et = $row{ $self->{et} };
	$reason //= 'invalid_value'
	  if defined $et && ($et < -62_135_596_800_000_000 || $et >= 253_402_300_800_000_000);
	return (undef, $reason) if $reason;
	return (\%row, undef);
}

# JSON value -> Perl value for a column type, or undef if invalid.
# Defaults are given as text (or JSON scalars) and read like input text.
sub convert
{
	my ($type, $v, $is_default) = @_;
	my $isnum = !ref($v) && is_json_number($v);    # before anything stringifies $v
	if ($type eq 'text')
	{
		return ref $v ? undef : "$v";
	}
	if ($type =~ /^(bigint|int|integer|smallint)$/)
	{
		return undef if ref $v;
		return undef unless "$v" =~ /^-?\d+$/;
		return 0 + $v;
	}
	if ($type eq 'boolean')
	{
		return ($v ? 1 : 0) if JSON::PP::is_bool($v);
		return ("$v" eq 'true' ? 1 : 0) if $is_default && "$v" =~ /^(true|false)$/;
		return undef;
	}
	if ($type eq 'timestamptz')
	{
		return undef if ref $v;
		if ($isnum && !$is_default)
		{
			return undef unless "$v" =~ /^-?\d+$/;
			return $v * 1000;
		}
		return StreamViewTest::iso_us("$v");
	}
	die "oracle: unsupported type $type";
}

# Was this scalar a JSON number (not a string)?  JSON::PP decodes numbers
# to IV/NV and strings to PV; look before anything stringifies it.
sub is_json_number
{
	require B;
	my $flags = B::svref_2object(\$_[0])->FLAGS;
	return ($flags & (B::SVf_IOK() | B::SVf_NOK())) && !($flags & B::SVf_POK()) ? 1 : 0;
}

# [start, end] of every window that contains $t (us): for tumble and hop,
# windows of fixed length aligned to the Unix epoch; 'spans' windows come
# from the view's own sub (t/017_windows.pl computes windows on a time
# zone's wall clock with PostgreSQL's date_trunc).
sub window_spans
{
	my ($w, $t) = @_;
	return $w->[1]->($t) if $w->[0] eq 'spans';
	my $size = $w->[1] * 1000;
	return map { [ $_, $_ + $size ] } window_starts($w, $t);
}

sub window_starts
{
	my ($w, $t) = @_;
	use integer;
	if ($w->[0] eq 'tumble')
	{
		my $size = $w->[1] * 1000;
		return (($t / $size) * $size);
	}
	my ($size, $slide) = ($w->[1] * 1000, $w->[2] * 1000);
	my @s;
	for (my $s = ($t / $slide) * $slide; $s > $t - $size; $s -= $slide) { unshift @s, $s }
	return @s;
}

# feed([[p, key, value], ...]): messages of each partition in list order
# (partitions are independent, so the interleaving does not matter).
sub feed
{
	my ($self, $msgs) = @_;
	for my $m (@$msgs)
	{
		my ($p, $key, $payload) = @$m;
		my $ps = $self->{parts}{$p} //= { max_et => undef, n => 0 };
		my $offset = $ps->{n}++;
		my ($row, $reason) = $self->read_message($payload);
		if (!$row)
		{
			push @{ $self->{dead} }, [ $p, $offset, $reason ];
			for my $v (@{ $self->{views} })
			{
				my $c = $self->{vstate}{ $v->{name} }{counters}{$p} //= new_counters();
				$c->{consumed}++;
				$c->{dead_lettered}++;
			}
			next;
		}
		my $t   = $row->{ $self->{et} };
		my $eid = defined $self->{eid} ? $row->{ $self->{eid} } : undef;
		for my $v (@{ $self->{views} })
		{
			my $vs = $self->{vstate}{ $v->{name} };
			my $c  = $vs->{counters}{$p} //= new_counters();
			$c->{consumed}++;
			my $floor;
			$floor = $ps->{max_et} - $self->{mooo} - $v->{_lateness_us} if defined $ps->{max_et};
			my $dup = 0;
			if (defined $eid && exists $vs->{seen}{$eid})
			{
				my ($sp, $st) = @{ $vs->{seen}{$eid} };
				my $sps = $self->{parts}{$sp};
				my $sfloor = $sps->{max_et} - $self->{mooo} - $v->{_lateness_us};
				$dup = 1 if $st >= $sfloor;
			}
			if ($dup)
			{
				$c->{duplicates}++;
			}
			elsif (defined $floor && $t < $floor)
			{
				$c->{too_late}++;
				push @{ $vs->{too_late} }, [ $p, $offset ];
			}
			else
			{
				my $pass = !$v->{where} || $v->{where}->($row);
				if ($pass && $v->{error} && $v->{error}->($row))
				{
					# the view's query fails for this event: a dead letter
					$c->{dead_lettered}++;
					push @{ $vs->{query_errors} }, [ $p, $offset ];
					next;
				}
				$c->{applied}++;
				$vs->{seen}{$eid} = [ $p, $t ] if defined $eid;
				$self->aggregate($v, $row) if $pass;
			}
		}
		$ps->{max_et} = $t if !defined $ps->{max_et} || $t > $ps->{max_et};
	}
	return;
}

sub new_counters
{
	return { consumed => 0, applied => 0, duplicates => 0, too_late => 0, dead_lettered => 0 };
}

sub aggregate
{
	my ($self, $v, $row) = @_;
	my $groups = $self->{vstate}{ $v->{name} }{groups};
	for my $span (window_spans($v->{window}, $row->{ $self->{et} }))
	{
		my ($ws, $we) = @$span;
		my @kv = map { $row->{$_} } @{ $v->{keys} };
		my $gk = join("\x1e", $ws, map { defined $_ ? "v$_" : 'N' } @kv);
		my $g = $groups->{$gk} //= { ws => $ws, we => $we, keys => \@kv, st => [ map { {} } @{ $v->{aggs} } ] };
		die "oracle: window $ws ends at $g->{we} and at $we" if $g->{we} != $we;
		my $i = 0;
		for my $a (@{ $v->{aggs} })
		{
			my ($name, $kind, $col) = @$a;
			my $st = $g->{st}[ $i++ ];
			if ($kind eq 'count_star') { $st->{n}++; next }
			my $x = ref $col eq 'HASH' ? $col->{perl}->($row) : ref $col eq 'CODE' ? $col->($row) : $row->{$col};
			next unless defined $x;
			if    ($kind eq 'count') { $st->{n}++ }
			elsif ($kind eq 'sum') { $st->{s} += $x }
			elsif ($kind eq 'min') { $st->{m} = $x if !defined $st->{m} || $x < $st->{m} }
			elsif ($kind eq 'max') { $st->{m} = $x if !defined $st->{m} || $x > $st->{m} }
			elsif ($kind eq 'avg') { $st->{s} += $x; $st->{n}++ }
			elsif ($kind eq 'bool_and') { $st->{b} = defined $st->{b} ? ($st->{b} && $x ? 1 : 0) : $x }
			elsif ($kind eq 'bool_or') { $st->{b} = defined $st->{b} ? ($st->{b} || $x ? 1 : 0) : $x }
			else { die "oracle: unknown aggregate $kind" }
		}
	}
	return;
}

# The view's watermark (us): min over partitions with a readable event of
# max_et - max_out_of_orderness; undef if none.
sub watermark
{
	my ($self) = @_;
	my $wm;
	for my $ps (values %{ $self->{parts} })
	{
		next unless defined $ps->{max_et};
		my $w = $ps->{max_et} - $self->{mooo};
		$wm = $w if !defined $wm || $w < $wm;
	}
	return $wm;
}

sub view
{
	my ($self, $name) = @_;
	my ($v) = grep { $_->{name} eq $name } @{ $self->{views} };
	die "oracle: no view $name" unless $v;
	return $v;
}

# Expected rows of a view: [ws_us, we_us, keys..., aggs..., is_final], as
# strings ('NULL' for NULL, 't'/'f' for booleans); avg as a number.
sub rows
{
	my ($self, $name) = @_;
	my $v    = $self->view($name);
	my $wm   = $self->watermark;
	my @rows;
	for my $g (values %{ $self->{vstate}{$name}{groups} })
	{
		my @r = ($g->{ws}, $g->{we}, map { defined $_ ? $_ : 'NULL' } @{ $g->{keys} });
		my $i = 0;
		for my $a (@{ $v->{aggs} })
		{
			my ($n, $kind) = @$a;
			my $st = $g->{st}[ $i++ ];
			my $val;
			if    ($kind eq 'count_star' || $kind eq 'count') { $val = $st->{n} // 0 }
			elsif ($kind eq 'sum' || $kind eq 'min' || $kind eq 'max') { $val = $st->{ $kind eq 'sum' ? 's' : 'm' } }
			elsif ($kind eq 'avg') { $val = $st->{n} ? $st->{s} / $st->{n} : undef }
			else { $val = defined $st->{b} ? ($st->{b} ? 't' : 'f') : undef }
			push @r, defined $val ? $val : 'NULL';
		}
		my $final = defined $wm && $g->{we} + $v->{_lateness_us} <= $wm ? 't' : 'f';
		push @r, $final;
		push @rows, \@r;
	}
	return \@rows;
}

sub counters { my ($self, $name) = @_; return $self->{vstate}{$name}{counters} }
sub too_late { my ($self, $name) = @_; return $self->{vstate}{$name}{too_late} }
sub query_errors { my ($self, $name) = @_; return $self->{vstate}{$name}{query_errors} }
sub dead     { my ($self) = @_; return $self->{dead} }
sub part_state { my ($self) = @_; return $self->{parts} }


1;
