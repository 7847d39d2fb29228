#!/usr/bin/perl
# A third real OpenID Provider for ssogate's integration tests: LemonLDAP::NG 2.16
# (Debian bookworm's liblemonldap-ng-portal-perl), its portal as a PSGI app served by
# Starman on a loopback port. Run as `perl op.pl`; see README.md beside this file.
#
# Configuration comes as JSON in the OP_CONFIG environment variable:
#   { "port": 0,
#     "clients": [ { "client_id", "client_secret", "redirect_uris": [...],
#                    "post_logout_redirect_uris": [...],
#                    "frontchannel_logout_uri": "...",       (optional)
#                    "require_pkce": true,                   (optional, default true)
#                    "logout_confirm": false,                (optional, default false)
#                    "id_token_claims": false } ],           (optional, default false)
#     "accounts": { "<login>": { "email", "email_verified", "name", "given_name",
#                                "family_name", "groups": [...] } } }
# Other keys (backchannel_logout_uri, grant_types, ttl...) are ignored.
# Port 0 (or none) picks a free one. Once GET /.well-known/openid-configuration answers
# 200 it prints one line to stdout, {"issuer": "http://127.0.0.1:<port>/"}, and nothing
# more; logs go to stderr (LLNG_LOGLEVEL=debug|info|notice|warn|error, default warn).
# It runs until killed; killing this process (even with SIGKILL) takes its workers down
# (PR_SET_PDEATHSIG) and a small watcher removes its temporary directory.
#
# Everything LemonLDAP reads or writes lives in a fresh temporary directory: the
# lemonldap-ng.ini (LLNG_DEFAULTCONFFILE), the File configuration backend's
# lmConf-1.json, the SSO, persistent and OIDC sessions, the session cache. Nothing in
# /etc/lemonldap-ng or /var/lib/lemonldap-ng is read or written, so instances on
# different ports run side by side.
#
# Sign-in is LemonLDAP's "Demo" backend: a user's password is the login itself. Its
# users are dwho, rtyler and msmith (given_name/family_name are split from their cn),
# plus every login in "accounts" (added to the Demo table, groups included). The login
# form's CSRF token is off (requireToken 0), so a test can POST user=<login>&password=
# <login> back to the /oauth2/authorize URL it was shown the form at.
#
# Each client becomes a Relying Party "rp<N>": its client_id/secret (client_secret_basic
# or client_secret_post), exact redirect and post-logout redirect URIs, consent bypassed,
# ID tokens signed RS256 with this instance's own key, PKCE required unless
# "require_pkce": false (LemonLDAP checks code_verifier only when it is required),
# refresh tokens (tied to the SSO session; with scope offline_access they outlive it),
# front-channel logout to frontchannel_logout_uri with iss and sid (the user's sub),
# and the end-session endpoint without a confirmation page unless "logout_confirm":
# true. Claims follow the standard scopes (email -> email, email_verified; profile ->
# name, given_name, family_name, preferred_username) and an extra scope "groups" ->
# groups (always an array); they go in userinfo, and in the ID token only with
# "id_token_claims": true.
use strict;
use warnings;

use Config;
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON qw(decode_json encode_json);
use Plack::Builder;
use POSIX ();
use Time::HiRes qw(time);

$| = 1;
my $started = time;

# RSA key generation takes 0.1-1 s: openssl does it on the other core meanwhile.
my $keygen;
open( $keygen, '-|', 'openssl genrsa 2048 2>/dev/null' ) or undef $keygen;
my $CONFIG  = decode_json( $ENV{OP_CONFIG} || '{}' );

sub logline { print STDERR "lemonldap op: @_\n" }

# Bind first: the port (0 = any free one) is part of the portal's URL and the issuer.
# Starman takes this very socket over (Server::Starter's protocol), so there is no race.
my $listen = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $CONFIG->{port} || 0,
    Proto     => 'tcp',
    Listen    => 1024,
    ReuseAddr => 1,
) or die "lemonldap op: cannot listen: $!\n";
my $port   = $listen->sockport;
my $origin = "http://127.0.0.1:$port";
my $issuer = "$origin/";
my $dir    = tempdir( "lemonldap-op-$port-XXXXXX", TMPDIR => 1 );

# The watcher: waits for this process and its workers to be gone (EOF on a pipe only
# they hold), then removes the temporary directory. Before that it announces readiness:
# once discovery answers 200 over HTTP, it prints the issuer line.
pipe( my $alive_r, my $alive_w ) or die "pipe: $!";
my $watcher = fork() // die "fork: $!";
if ( !$watcher ) {
    close $alive_w;
    close $listen;
    $SIG{$_} = 'IGNORE' for qw(INT TERM HUP PIPE);
    my $http = HTTP::Tiny->new( timeout => 60 );
    my $url  = "$origin/.well-known/openid-configuration";
    my $rin  = '';
    vec( $rin, fileno($alive_r), 1 ) = 1;
    while (1) {
        my $res = $http->get($url);
        if ( $res->{status} == 200 and eval { decode_json( $res->{content} )->{issuer} eq $issuer } ) {
            print STDOUT qq({"issuer": "$issuer"}\n);
            logline( sprintf "ready at %s after %.2f s", $issuer, time - $started );
            last;
        }
        # The server gone before it was ready: stop trying.
        last if select( my $rout = $rin, undef, undef, 0.05 );
    }
    close STDOUT;
    open STDOUT, '>', '/dev/null';
    1 while sysread( $alive_r, my $buf, 1 );
    remove_tree($dir);
    POSIX::_exit(0);
}
close $alive_r;

# --- the configuration ------------------------------------------------------------

make_path( map { "$dir/$_" } qw(conf sessions/lock psessions/lock oidc/lock cache) );

# LemonLDAP's modules (read no configuration when loaded).
require Lemonldap::NG::Portal::Main;
require Lemonldap::NG::Portal::UserDB::Demo;
require Lemonldap::NG::Portal::Issuer::OpenIDConnect;

# The signing key, this instance's own (generated while LemonLDAP's modules load).
my ( $private_pem, $public_pem );
{
    require Crypt::OpenSSL::RSA;
    my $pem = $keygen ? do { local $/; my $k = <$keygen>; close $keygen; $k } : '';
    my $rsa = ( $pem =~ /PRIVATE KEY/ and eval { Crypt::OpenSSL::RSA->new_private_key($pem) } )
      || Crypt::OpenSSL::RSA->generate_key(2048);
    $private_pem = $rsa->get_private_key_string;
    $public_pem  = $rsa->get_public_key_x509_string;
}

my %rp_options;
my %rp_claims;
my %rp_extra_claims;
my $n = 0;
for my $client ( @{ $CONFIG->{clients} || [] } ) {
    my $rp = 'rp' . ++$n;
    $rp_options{$rp} = {
        oidcRPMetaDataOptionsClientID               => $client->{client_id},
        oidcRPMetaDataOptionsClientSecret           => $client->{client_secret} // '',
        oidcRPMetaDataOptionsPublic                 => defined $client->{client_secret} ? 0 : 1,
        oidcRPMetaDataOptionsDisplayName            => $client->{client_id},
        oidcRPMetaDataOptionsRedirectUris           => join( ' ', @{ $client->{redirect_uris} || [] } ),
        oidcRPMetaDataOptionsPostLogoutRedirectUris => join( ' ', @{ $client->{post_logout_redirect_uris} || [] } ),
        oidcRPMetaDataOptionsIDTokenSignAlg         => 'RS256',
        oidcRPMetaDataOptionsBypassConsent          => 1,
        oidcRPMetaDataOptionsRequirePKCE            => ( $client->{require_pkce} // 1 ) ? 1 : 0,
        oidcRPMetaDataOptionsRefreshToken           => 1,
        oidcRPMetaDataOptionsAllowOffline           => 1,
        oidcRPMetaDataOptionsIDTokenForceClaims     => $client->{id_token_claims} ? 1 : 0,
        oidcRPMetaDataOptionsLogoutType             => 'front',
        oidcRPMetaDataOptionsLogoutUrl              => $client->{frontchannel_logout_uri} // '',
        oidcRPMetaDataOptionsLogoutSessionRequired  => 1,
        oidcRPMetaDataOptionsLogoutBypassConfirm    => $client->{logout_confirm} ? 0 : 1,
    };
    $rp_claims{$rp} = {
        email              => 'mail',
        email_verified     => 'email_verified;bool',
        name               => 'cn',
        given_name         => 'given_name',
        family_name        => 'family_name',
        preferred_username => 'uid',
        groups             => 'groups;string;always',
    };
    $rp_extra_claims{$rp} = { groups => 'groups' };
}

sub storage {
    my ($name) = @_;
    return {
        Directory      => "$dir/$name",
        LockDirectory  => "$dir/$name/lock",
        generateModule => 'Lemonldap::NG::Common::Apache::Session::Generate::SHA256',
    };
}

my $conf = {
    cfgNum     => 1,
    cfgVersion => '2.16.1',
    cfgAuthor  => 'ssogate tests/lemonldap/op.pl',
    cfgDate    => int time,
    cfgLog     => '',

    portal         => $issuer,
    domain         => '127.0.0.1',       # LemonLDAP sends Domain=.127.0.0.1
    cookieName     => "lemonldap$port",  # cookies ignore ports: one name per instance
    securedCookie  => 0,
    httpOnly       => 1,
    cookieSameSite => 'Lax',
    timeout        => 72000,

    authentication   => 'Demo',
    userDB           => 'Same',
    passwordDB       => 'Demo',
    requireToken     => 0,
    whatToTrace      => 'uid',
    demoExportedVars => {
        map { $_ => $_ } qw(uid cn mail given_name family_name email_verified)
    },
    exportedVars         => {},
    locationRules        => {},           # no protected virtual host: the portal only
    exportedHeaders      => {},
    macros               => {},
    groups               => {},
    loginHistoryEnabled  => 0,
    notification         => 0,
    portalDisplayAppslist => 0,
    bruteForceProtection => 0,

    globalStorage              => 'Apache::Session::File',
    globalStorageOptions       => storage('sessions'),
    persistentStorage          => 'Apache::Session::File',
    persistentStorageOptions   => storage('psessions'),
    oidcStorage                => 'Apache::Session::File',
    oidcStorageOptions         => storage('oidc'),
    # Each worker keeps the last session it read in memory for handlerInternalCache
    # seconds (15 by default): a logout served by another worker would not be seen there.
    handlerInternalCache       => 0,
    localSessionStorage        => 'Cache::FileCache',
    localSessionStorageOptions => {
        namespace          => 'lemonldap-ng-sessions',
        cache_root         => "$dir/cache",
        cache_depth        => 3,
        default_expires_in => 600,
        directory_umask    => '007',
    },

    issuerDBOpenIDConnectActivation       => 1,
    issuerDBOpenIDConnectPath             => '^/oauth2/',
    issuerDBOpenIDConnectRule             => 1,
    oidcServiceMetaDataIssuer             => $issuer,
    oidcServicePrivateKeySig              => $private_pem,
    oidcServicePublicKeySig               => $public_pem,
    oidcServiceKeyIdSig                   => "llng-$port-" . sprintf( '%08x', int rand 0xffffffff ),
    oidcServiceAllowAuthorizationCodeFlow => 1,
    oidcServiceAllowImplicitFlow          => 0,
    oidcServiceAllowHybridFlow            => 0,
    oidcServiceIgnoreScopeForClaims       => 0,
    oidcRPMetaDataOptions                 => \%rp_options,
    oidcRPMetaDataExportedVars            => \%rp_claims,
    oidcRPMetaDataOptionsExtraClaims      => \%rp_extra_claims,
};

open my $fh, '>', "$dir/conf/lmConf-1.json" or die $!;
print $fh encode_json($conf);
close $fh;

my $loglevel = $ENV{LLNG_LOGLEVEL} || 'warn';
open $fh, '>', "$dir/lemonldap-ng.ini" or die $!;
print $fh <<"INI";
[all]
logLevel = $loglevel
checkTime = 86400

[configuration]
type = File
dirName = $dir/conf

[portal]
staticPrefix = /static
templateDir = /usr/share/lemonldap-ng/portal/templates
languages = en
INI
close $fh;
$ENV{LLNG_DEFAULTCONFFILE} = "$dir/lemonldap-ng.ini";

# --- the Demo users ---------------------------------------------------------------

{
    no warnings 'once';
    my $accounts = \%Lemonldap::NG::Portal::UserDB::Demo::demoAccounts;
    my $groups   = \%Lemonldap::NG::Portal::UserDB::Demo::demoGroups;
    for my $account ( values %$accounts ) {
        my ( $given, $family ) = split / /, $account->{cn}, 2;
        $account->{given_name}  //= $given;
        $account->{family_name} //= $family;
    }
    my $accounts_config = $CONFIG->{accounts} || {};
    for my $login ( sort keys %$accounts_config ) {
        my $claims = $accounts_config->{$login} || {};
        my $row    = $accounts->{$login} ||= { uid => $login };
        $row->{mail}        = $claims->{email}       if defined $claims->{email};
        $row->{given_name}  = $claims->{given_name}  if defined $claims->{given_name};
        $row->{family_name} = $claims->{family_name} if defined $claims->{family_name};
        $row->{cn} = $claims->{name} // $row->{cn}
          // join( ' ', grep { defined && length } $row->{given_name}, $row->{family_name} );
        $row->{email_verified} = $claims->{email_verified} ? 1 : 0
          if exists $claims->{email_verified};
        if ( ref $claims->{groups} eq 'ARRAY' ) {
            @$_ = grep { $_ ne $login } @$_ for values %$groups;
            push @{ $groups->{$_} ||= [] }, $login for @{ $claims->{groups} };
        }
    }
}

# --- the PSGI app -----------------------------------------------------------------

require Plack::App::File;
require Plack::Middleware::AccessLog;
require HTTP::Request::Common;
require HTTP::Message::PSGI;

my $portal = Lemonldap::NG::Portal::Main->run( {} );
# The pages' own assets: LemonLDAP's /static, and Debian's jQuery and Bootstrap under
# /javascript (what its Apache and Nginx configurations alias). The login form and the
# logout page's 30-second redirect (info.js) need them in a browser.
my $static     = Plack::App::File->new( root => '/usr/share/lemonldap-ng/portal/htdocs/static' )->to_app;
my $javascript = Plack::App::File->new( root => '/usr/share/javascript' )->to_app;
my $app        = builder {
    enable 'AccessLog', format => 'combined', logger => sub { print STDERR @_ }
      if $loglevel =~ /^(debug|info)$/;
    mount '/static'     => $static;
    mount '/javascript' => $javascript;
    mount '/'           => $portal;
};

# Warm up in this process, before the workers fork: LemonLDAP loads its configuration
# and modules on the first request, so the workers start with them loaded.
{
    my $env = HTTP::Message::PSGI::req_to_psgi(
        HTTP::Request::Common::GET("$origin/.well-known/openid-configuration") );
    my $res = Plack::Util::run_app( $app, $env );
    die "lemonldap op: discovery answers $res->[0] in-process\n" unless $res->[0] == 200;
}

# --- the server -------------------------------------------------------------------

# Workers die with this process, however it dies (prctl(PR_SET_PDEATHSIG, SIGKILL)).
my $master    = $$;
my $SYS_prctl = { 'x86_64' => 157, 'aarch64' => 167 }->{ ( split /-/, $Config{archname} )[0] };
sub die_with_parent {
    if ($SYS_prctl) {
        syscall( $SYS_prctl, 1, 9 ) == 0 or logline("prctl: $!");
    }
    POSIX::_exit(0) if getppid() != $master;
}

$ENV{SERVER_STARTER_PORT} = "127.0.0.1:$port=" . fileno($listen);
require Plack::Handler::Starman;
Plack::Handler::Starman->new(
    workers          => $ENV{LLNG_WORKERS} || 4,
    keepalive        => 0,
    read_timeout     => 5,
    proctitle        => 0,
    psgi_app_builder => sub { die_with_parent(); $app },
)->run($app);
