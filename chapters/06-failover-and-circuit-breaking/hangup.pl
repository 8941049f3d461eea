#!/usr/bin/env perl
# hangup.pl PORT: a broken backend on 127.0.0.1:PORT. It reads each request (head and body)
# and closes the connection without answering, like a backend that crashes mid-request.
# Only Perl's core modules. One connection at a time.
use strict;
use warnings;
use IO::Socket::INET;

my $port = shift or die "usage: hangup.pl PORT\n";
my $server = IO::Socket::INET->new(
    LocalAddr => "127.0.0.1:$port",
    Listen    => 16,
    ReuseAddr => 1,
) or die "hangup.pl: cannot listen on 127.0.0.1:$port: $!\n";

while (my $client = $server->accept) {
    my $length = 0;
    while (my $line = <$client>) {
        last if $line =~ /^\r?\n\z/;
        $length = $1 if $line =~ /^content-length:\s*(\d+)/i;
    }
    read($client, my $body, $length) if $length;
    close $client;
}
