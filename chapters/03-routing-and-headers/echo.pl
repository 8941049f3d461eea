#!/usr/bin/env perl
# echo.pl PORT: a tiny HTTP/1.1 backend on 127.0.0.1:PORT that answers every request with the
# request it received: the request line, then the headers, names lowercased, sorted by name.
# Only Perl's core modules, so it runs wherever perl does. One connection at a time.
use strict;
use warnings;
use IO::Socket::INET;

my $port = shift or die "usage: echo.pl PORT\n";
my $server = IO::Socket::INET->new(
    LocalAddr => "127.0.0.1:$port",
    Listen    => 16,
    ReuseAddr => 1,
) or die "echo.pl: cannot listen on 127.0.0.1:$port: $!\n";

while (my $client = $server->accept) {
    my $request_line = <$client>;
    next unless defined $request_line;
    $request_line =~ s/\r?\n\z//;
    my (@headers, $length);
    while (my $line = <$client>) {
        $line =~ s/\r?\n\z//;
        last if $line eq '';
        my ($name, $value) = split /:\s*/, $line, 2;
        $length = $value if lc $name eq 'content-length';
        push @headers, lc($name) . ": $value";
    }
    read($client, my $body, $length) if $length;
    my $answer = join("\n", $request_line, sort @headers) . "\n";
    print $client "HTTP/1.1 200 OK\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Length: ", length($answer), "\r\n",
        "Connection: close\r\n\r\n",
        $answer;
    close $client;
}
