//! Keeping outgoing webhooks out of the internal network.
//!
//! A webhook target URL is chosen by whoever configures a repository, and Slipway sends requests
//! to it from inside the operator's network. Without checks, a target such as
//! `http://169.254.169.254/` or `http://10.0.0.5:6379/` would turn Slipway into a way to reach
//! cloud metadata services and internal hosts. So a target is checked twice:
//!
//! 1. When it is configured, by [`check_target_url`]: http or https only, no credentials in the
//!    URL, a host, and a literal address must be allowed by [`address_allowed`].
//! 2. When a delivery is sent, by [`check_resolved`]: the host is resolved, **every** address it
//!    resolves to must be allowed, and the connection is pinned to the checked address (with
//!    reqwest's `resolve`), so a DNS answer that changes between the check and the connection
//!    (DNS rebinding) cannot swap an internal address in.
//!
//! `allow_private` (an operator's explicit choice; the tests use it for loopback receivers) allows
//! loopback, private (RFC 1918, unique local), shared (CGNAT) and link-local addresses. Note that
//! link-local includes cloud metadata services at `169.254.169.254`. It never allows the
//! unspecified address, `0.0.0.0/8` (which Linux routes to the local host), multicast, broadcast,
//! documentation, benchmarking or reserved ranges: nothing legitimate listens there.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Longest target URL accepted; longer ones are mistakes or abuse.
pub const MAX_URL_LEN: usize = 2048;

/// A target URL that passed [`check_target_url`]. Send to [`TargetUrl::as_str`], not to the
/// string that was checked: parsing normalises (e.g. `http://0x7f.1/` is `http://127.0.0.1/`),
/// and the normalised form is what was checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetUrl {
    url: Url,
}

impl TargetUrl {
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host as written in the URL: a domain name, a dotted IPv4 address, or an IPv6 address
    /// in brackets.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The domain name to resolve (and to pin with reqwest's `resolve`), or `None` when the host
    /// is a literal address that needs no resolution.
    pub fn domain(&self) -> Option<&str> {
        match self.url.host() {
            Some(Host::Domain(domain)) => Some(domain),
            _ => None,
        }
    }

    /// The host when it is a literal address.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        }
    }

    /// The port to connect to: the URL's, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.url.scheme() == "https" {
                443
            } else {
                80
            })
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the origin: webhook URLs often carry a secret in their path or query
        // (capability URLs), and Debug output ends up in logs.
        write!(
            f,
            "TargetUrl({}://{}:{}/…)",
            self.url.scheme(),
            self.host(),
            self.port()
        )
    }
}

/// How far an address may be contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Public,
    /// Only with `allow_private`; the text names the kind of address for error messages.
    Private(&'static str),
    /// Never; the text names the kind of address.
    Never(&'static str),
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() => Reach::Never("the unspecified address"),
        (0, _, _) => Reach::Never("in 0.0.0.0/8, which reaches the local host"),
        (127, _, _) => Reach::Private("a loopback address"),
        (10, _, _) => Reach::Private("a private address"),
        (172, 16..=31, _) => Reach::Private("a private address"),
        (192, 168, _) => Reach::Private("a private address"),
        (100, 64..=127, _) => Reach::Private("a shared (carrier-grade NAT) address"),
        (169, 254, _) => Reach::Private("a link-local address"),
        (192, 0, 0) => Reach::Never("an IETF protocol assignment"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Reach::Never("a documentation address"),
        (198, 18..=19, _) => Reach::Never("a benchmarking address"),
        (192, 88, 99) => Reach::Never("a 6to4 relay anycast address"),
        _ if ip.is_broadcast() => Reach::Never("the broadcast address"),
        (224..=239, _, _) => Reach::Never("a multicast address"),
        (240..=255, _, _) => Reach::Never("a reserved address"),
        _ => Reach::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Reach {
    let s = ip.segments();
    let o = ip.octets();
    // The IPv4 address in the last 32 bits, for the forms that embed one.
    let last_v4 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Reach::Never("the unspecified address"),
        [0, 0, 0, 0, 0, 0, 0, 1] => Reach::Private("a loopback address"),
        // IPv4-mapped: the connection goes to the IPv4 address, so judge that.
        [0, 0, 0, 0, 0, 0xffff, _, _] => classify_v4(last_v4),
        [0, 0, 0, 0, 0, _, _, _] => Reach::Never("an IPv4-compatible or reserved address"),
        // NAT64's well-known prefix translates to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => classify_v4(last_v4),
        [0x64, 0xff9b, 1, ..] => Reach::Private("a local-use NAT64 address"),
        [0x100, 0, 0, 0, ..] => Reach::Never("a discard-only address"),
        [0x2001, 0xdb8, ..] => Reach::Never("a documentation address"),
        [0x3fff, b, ..] if b < 0x1000 => Reach::Never("a documentation address"),
        // Teredo tunnels to an obscured IPv4 address that cannot be judged here.
        [0x2001, 0, ..] => Reach::Never("a Teredo address"),
        // 6to4 embeds an IPv4 address in bits 16 to 48.
        [0x2002, ..] => classify_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        [first, ..] if first & 0xe000 == 0x2000 => Reach::Public,
        [first, ..] if first & 0xfe00 == 0xfc00 => Reach::Private("a unique local address"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Reach::Private("a link-local address"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Reach::Private("a site-local address"),
        [first, ..] if first & 0xff00 == 0xff00 => Reach::Never("a multicast address"),
        // Everything outside global unicast (2000::/3) and the ranges above is unassigned.
        _ => Reach::Never("a reserved address"),
    }
}

fn classify(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

/// Whether Slipway may connect to `ip`. Public addresses always; loopback, private, shared and
/// link-local ones only with `allow_private`; unspecified, multicast, broadcast, documentation
/// and reserved ones never. IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4
/// address they lead to.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    refusal(ip, allow_private).is_none()
}

/// Why `ip` is refused, or `None` when it is allowed.
fn refusal(ip: IpAddr, allow_private: bool) -> Option<String> {
    match classify(ip) {
        Reach::Public => None,
        Reach::Private(_) if allow_private => None,
        Reach::Private(kind) => Some(format!(
            "{ip} is {kind}; private, loopback and link-local targets are refused unless the operator allows them"
        )),
        Reach::Never(kind) => Some(format!("{ip} is {kind} and is never a webhook target")),
    }
}

/// Checks a webhook target URL when it is configured (and again before sending): http or https,
/// no user name or password, a host, at most [`MAX_URL_LEN`] bytes, and a literal address or a
/// `localhost` name only when [`address_allowed`] says so. A domain name is resolved and checked
/// at send time by [`check_resolved`].
pub fn check_target_url(url: &str, allow_private: bool) -> Result<TargetUrl, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} bytes"));
    }
    let parsed = Url::parse(url.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the URL's scheme is {:?}; only http and https are allowed",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the URL must not contain a user name or password; the signature authenticates deliveries"
                .to_owned(),
        );
    }
    match parsed.host() {
        None => return Err("the URL has no host".to_owned()),
        Some(Host::Ipv4(ip)) => refuse_if(IpAddr::V4(ip), allow_private)?,
        Some(Host::Ipv6(ip)) => refuse_if(IpAddr::V6(ip), allow_private)?,
        Some(Host::Domain(domain)) => {
            // `localhost` and its subdomains resolve to loopback by definition (RFC 6761), so
            // they are refused here already rather than only after resolution.
            let name = domain.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err("the URL has no host".to_owned());
            }
            if (name == "localhost" || name.ends_with(".localhost")) && !allow_private {
                return Err(format!(
                    "{domain} is a loopback name; loopback targets are refused unless the operator allows them"
                ));
            }
        }
    }
    Ok(TargetUrl { url: parsed })
}

fn refuse_if(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    match refusal(ip, allow_private) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// At send time: the address to connect to for `target`, given every address its host resolved
/// to (for a literal-address host, pass that address). Refuses when there is none or when
/// **any** of them is refused, since a name that also points inside the network is not a public
/// target, and returns the first with the target's port, to pin the connection to.
pub fn check_resolved(
    target: &TargetUrl,
    addresses: &[IpAddr],
    allow_private: bool,
) -> Result<SocketAddr, String> {
    let first = addresses
        .first()
        .ok_or_else(|| format!("{} resolved to no address", target.host()))?;
    for ip in addresses {
        if let Some(reason) = refusal(*ip, allow_private) {
            return Err(format!("{} resolves to {reason}", target.host()));
        }
    }
    Ok(SocketAddr::new(*first, target.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// (address, allowed without allow_private, allowed with it).
    const TABLE: &[(&str, bool, bool)] = &[
        // Public.
        ("1.1.1.1", true, true),
        ("8.8.8.8", true, true),
        ("93.184.216.34", true, true),
        ("172.15.255.255", true, true),
        ("172.32.0.0", true, true),
        ("100.63.255.255", true, true),
        ("100.128.0.0", true, true),
        ("169.253.255.255", true, true),
        ("192.169.0.1", true, true),
        ("223.255.255.255", true, true),
        ("2606:4700:4700::1111", true, true),
        ("2a00:1450:4001:80b::200e", true, true),
        // Loopback, private, shared, link-local: only with allow_private.
        ("127.0.0.1", false, true),
        ("127.255.255.254", false, true),
        ("10.0.0.1", false, true),
        ("10.255.255.255", false, true),
        ("172.16.0.1", false, true),
        ("172.31.255.255", false, true),
        ("192.168.1.1", false, true),
        ("100.64.0.1", false, true),
        ("100.127.255.255", false, true),
        ("169.254.169.254", false, true),
        ("::1", false, true),
        ("fc00::1", false, true),
        ("fd12:3456:789a::1", false, true),
        ("fe80::1", false, true),
        ("febf::1", false, true),
        ("fec0::1", false, true),
        ("64:ff9b:1::1", false, true),
        // IPv4-mapped IPv6 is judged by its IPv4 address.
        ("::ffff:127.0.0.1", false, true),
        ("::ffff:10.1.2.3", false, true),
        ("::ffff:169.254.169.254", false, true),
        ("::ffff:8.8.8.8", true, true),
        ("::ffff:0.0.0.0", false, false),
        ("::ffff:224.0.0.1", false, false),
        // NAT64 and 6to4 likewise.
        ("64:ff9b::7f00:1", false, true),
        ("64:ff9b::808:808", true, true),
        ("2002:7f00:1::", false, true),
        ("2002:a00:1::1", false, true),
        ("2002:808:808::1", true, true),
        // Never, whatever the operator allows.
        ("0.0.0.0", false, false),
        ("0.1.2.3", false, false),
        ("255.255.255.255", false, false),
        ("224.0.0.1", false, false),
        ("239.255.255.250", false, false),
        ("240.0.0.1", false, false),
        ("192.0.0.1", false, false),
        ("192.0.2.1", false, false),
        ("198.51.100.7", false, false),
        ("203.0.113.9", false, false),
        ("198.18.0.1", false, false),
        ("198.19.255.255", false, false),
        ("192.88.99.1", false, false),
        ("::", false, false),
        ("::127.0.0.1", false, false),
        ("::ffff:0:7f00:1", false, false),
        ("ff02::1", false, false),
        ("ff05::2", false, false),
        ("2001:db8::1", false, false),
        ("3fff::1", false, false),
        ("2001::1", false, false),
        ("100::1", false, false),
        ("4000::1", false, false),
        ("e000::1", false, false),
    ];

    #[test]
    fn address_table() {
        for &(text, public, private) in TABLE {
            assert_eq!(address_allowed(ip(text), false), public, "{text} without");
            assert_eq!(address_allowed(ip(text), true), private, "{text} with");
        }
    }

    #[test]
    fn allow_private_never_loosens_what_is_always_refused_nor_tightens_public() {
        for &(text, public, private) in TABLE {
            // Anything allowed without the flag is allowed with it.
            assert!(!public || private, "{text}");
        }
    }

    #[test]
    fn urls_accepted() {
        for url in [
            "https://hooks.example.com/in",
            "http://hooks.example.com:8080/in?x=1",
            "https://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
            "HTTPS://Hooks.Example.COM/in",
        ] {
            assert!(check_target_url(url, false).is_ok(), "{url}");
        }
        let target = check_target_url("https://hooks.example.com/in", false).expect("valid");
        assert_eq!(target.domain(), Some("hooks.example.com"));
        assert_eq!(target.ip(), None);
        assert_eq!(target.port(), 443);
        let target = check_target_url("http://8.8.8.8:8080/x", false).expect("valid");
        assert_eq!(target.ip(), Some(ip("8.8.8.8")));
        assert_eq!(target.domain(), None);
        assert_eq!(target.port(), 8080);
        assert_eq!(target.host(), "8.8.8.8");
        assert_eq!(
            check_target_url("http://a.example", false).map(|t| t.port()),
            Ok(80)
        );
    }

    #[test]
    fn urls_refused() {
        for url in [
            "ftp://hooks.example.com/",
            "file:///etc/passwd",
            "gopher://hooks.example.com/",
            "javascript:alert(1)",
            "hooks.example.com/in",
            "https://user:pass@hooks.example.com/",
            "https://user@hooks.example.com/",
            "https://:pass@hooks.example.com/",
            "http://",
            "https:///",
            "",
            "   ",
            "https://127.0.0.1/",
            "https://10.0.0.1:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            // Other spellings of 127.0.0.1, which the URL parser normalises before the check.
            "http://0x7f.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
        ] {
            assert!(check_target_url(url, false).is_err(), "{url}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_target_url(&long, false).is_err());
    }

    #[test]
    fn allow_private_admits_loopback_and_private_urls_only() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost:9000/hook",
            "http://10.0.0.1/",
            "http://[::1]:8080/",
            "http://[fe80::1]/",
        ] {
            assert!(check_target_url(url, true).is_ok(), "{url}");
        }
        for url in [
            "http://0.0.0.0/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://u:p@127.0.0.1/",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_target_url(url, true).is_err(), "{url}");
        }
    }

    #[test]
    fn normalised_form_is_what_is_sent() {
        let target = check_target_url("http://0x7f.1:9/", true).expect("allowed");
        assert_eq!(target.as_str(), "http://127.0.0.1:9/");
        assert_eq!(target.ip(), Some(ip("127.0.0.1")));
    }

    #[test]
    fn resolved_addresses_must_all_be_allowed() {
        let target = check_target_url("https://hooks.example.com:8443/in", false).expect("ok");
        assert_eq!(
            check_resolved(&target, &[ip("8.8.8.8"), ip("1.1.1.1")], false),
            Ok(SocketAddr::new(ip("8.8.8.8"), 8443))
        );
        assert!(check_resolved(&target, &[], false).is_err());
        // A name that also points inside the network is refused, whichever address comes first.
        assert!(check_resolved(&target, &[ip("8.8.8.8"), ip("10.0.0.1")], false).is_err());
        assert!(check_resolved(&target, &[ip("::ffff:127.0.0.1")], false).is_err());
        assert_eq!(
            check_resolved(&target, &[ip("127.0.0.1")], true),
            Ok(SocketAddr::new(ip("127.0.0.1"), 8443))
        );
        assert!(check_resolved(&target, &[ip("0.0.0.0")], true).is_err());
    }

    #[test]
    fn debug_shows_only_the_origin() {
        let target = check_target_url(
            "https://hooks.example.com/services/T0/B0/capability?token=q",
            false,
        )
        .expect("ok");
        let debug = format!("{target:?}");
        assert_eq!(debug, "TargetUrl(https://hooks.example.com:443/…)");
    }

    #[test]
    fn refusals_explain_themselves() {
        let err = check_target_url("http://10.1.2.3/", false).expect_err("refused");
        assert!(err.contains("private"), "{err}");
        let err = check_target_url("http://224.0.0.1/", true).expect_err("refused");
        assert!(err.contains("multicast"), "{err}");
    }

    proptest! {
        #[test]
        fn check_target_url_never_panics(input in any::<String>(), allow in any::<bool>()) {
            let _ = check_target_url(&input, allow);
        }

        #[test]
        fn url_like_strings_never_panic_and_accepted_ones_are_sound(
            scheme in prop_oneof![Just("http"), Just("https"), Just("ftp"), Just("HTTP"), Just("")],
            rest in "[a-z0-9:@./\\[\\]%?#_\\-]{0,40}",
            allow in any::<bool>(),
        ) {
            if let Ok(target) = check_target_url(&format!("{scheme}://{rest}"), allow) {
                prop_assert!(matches!(target.url().scheme(), "http" | "https"));
                prop_assert!(target.url().username().is_empty());
                prop_assert!(target.url().password().is_none());
                prop_assert!(!target.host().is_empty());
                if let Some(ip) = target.ip() {
                    prop_assert!(address_allowed(ip, allow));
                }
            }
        }

        #[test]
        fn mapped_addresses_are_judged_like_their_ipv4(octets in any::<[u8; 4]>(), allow in any::<bool>()) {
            let v4 = Ipv4Addr::from(octets);
            prop_assert_eq!(
                address_allowed(IpAddr::V4(v4), allow),
                address_allowed(IpAddr::V6(v4.to_ipv6_mapped()), allow)
            );
        }
    }
}
