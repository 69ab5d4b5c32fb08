//! Keeping outgoing webhooks out of the internal network.
//!
//! A webhook target URL is chosen by whoever configures a repository, and Slipway sends requests
//! to it from inside the operator's network. Without checks, a target such as
//! `http://169.254.169.254/` or `http://10.0.0.5:6379/` would turn Slipway into a way to reach
//! cloud metadata services and internal hosts. So a target is checked twice:
//!
//! 1. When it is configured, by [`check_target_url`]: http or https only, read the same way by
//!    every parser ([`parse_unambiguous`]), no credentials in the URL, a host, and a literal
//!    address must be allowed by [`address_allowed`].
//! 2. When a delivery is sent, by [`check_resolved`]: the host is resolved, **every** address it
//!    resolves to must be allowed, and the connection is pinned to the checked addresses (with
//!    reqwest's `resolve_to_addrs`, which tries them in turn), so a DNS answer that changes
//!    between the check and the connection (DNS rebinding) cannot swap an internal address in.
//!
//! What may be reached beyond public addresses is the operator's [`TargetPolicy`]:
//!
//! - `allow_private` (the tests use it for loopback receivers) allows loopback, private (RFC 1918,
//!   unique local), shared (CGNAT) and link-local addresses, **except** cloud metadata services
//!   ([`METADATA_ADDRESSES`], such as `169.254.169.254`), which hand out credentials to whoever
//!   asks and so need more than a blanket "private is fine".
//! - `allowed_networks` lists private networks or single addresses that are allowed without
//!   opening everything (a self-hosted GitLab at `10.20.0.7`, say). It is also the only way to
//!   allow a metadata address: a listed network that contains it.
//!
//! Nothing allows the unspecified address, `0.0.0.0/8` (which Linux routes to the local host),
//! multicast, broadcast, documentation, benchmarking or reserved ranges: nothing legitimate
//! listens there.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

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

/// Cloud metadata services. They answer anyone on the instance with its credentials, so they stay
/// refused even when private targets are allowed, unless an entry of
/// [`TargetPolicy::allowed_networks`] contains them: AWS, GCP, Azure and OpenStack
/// (`169.254.169.254`), AWS ECS task metadata (`169.254.170.2`), Alibaba Cloud
/// (`100.100.100.200`) and AWS's IPv6 endpoint (`fd00:ec2::254`).
pub const METADATA_ADDRESSES: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)),
];

/// An IP network in CIDR notation (`10.20.0.0/16`, `fd00:1::/64`), or a single address
/// (`10.20.0.7`, the same as `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `address` with `prefix` bits, or an error when the prefix is too long or
    /// `address` has bits set past it (which usually means a typo, e.g. `10.20.1.0/16`).
    pub fn new(address: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("/{prefix} is longer than an address ({max} bits)"));
        }
        let network = Self { address, prefix };
        let masked = network.first();
        if masked != address {
            return Err(format!(
                "{address}/{prefix} has bits set past its prefix; the network is {masked}/{prefix}"
            ));
        }
        Ok(network)
    }

    /// The network's first address: `address` with every bit past the prefix cleared.
    fn first(&self) -> IpAddr {
        match self.address {
            IpAddr::V4(ip) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask))
            }
            IpAddr::V6(ip) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
            }
        }
    }

    /// Whether `ip` is in this network. An IPv4 network never contains an IPv6 address, nor
    /// the reverse: [`TargetPolicy`] judges the IPv6 forms that lead to an IPv4 address by that
    /// IPv4 address itself.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                IpNetwork {
                    address: ip,
                    prefix: self.prefix,
                }
                .first()
                    == self.address
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a network like 10.20.0.0/16"))?;
        let prefix = match prefix {
            None if address.is_ipv4() => 32,
            None => 128,
            Some(prefix) => prefix
                .parse::<u8>()
                .map_err(|_| format!("{text:?}: the prefix length must be a number of bits"))?,
        };
        Self::new(address, prefix).map_err(|e| format!("{text:?}: {e}"))
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// What the operator allows beyond public addresses. The default allows nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Loopback, private, shared and link-local addresses, except [`METADATA_ADDRESSES`].
    pub allow_private: bool,
    /// Private networks (and single addresses) allowed whatever `allow_private` says; the only
    /// way to allow a metadata address. Never-allowed ranges stay refused even if listed.
    pub allowed_networks: Vec<IpNetwork>,
}

impl TargetPolicy {
    /// Public addresses only.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Public addresses and every private one but the metadata services (the tests' loopback
    /// receivers need this).
    pub fn allow_private() -> Self {
        Self {
            allow_private: true,
            allowed_networks: Vec::new(),
        }
    }

    /// Whether an entry of `allowed_networks` contains `ip` or the IPv4 address it leads to.
    fn lists(&self, ip: IpAddr) -> bool {
        let embedded = leads_to_v4(ip).map(IpAddr::V4);
        self.allowed_networks
            .iter()
            .any(|network| network.contains(ip) || embedded.is_some_and(|v4| network.contains(v4)))
    }
}

/// The IPv4 address an IPv6 address leads to, for the forms that embed one the connection
/// really goes to: IPv4-mapped, NAT64's well-known prefix, and 6to4.
fn leads_to_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(ip) = ip else {
        return None;
    };
    let s = ip.segments();
    let o = ip.octets();
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        }
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

/// How far an address may be contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Public,
    /// Only with `allow_private` or a listed network; the text names the kind of address for
    /// error messages.
    Private(&'static str),
    /// A cloud metadata service: only when a listed network contains it.
    Metadata,
    /// Never; the text names the kind of address.
    Never(&'static str),
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if METADATA_ADDRESSES.contains(&IpAddr::V4(ip)) => Reach::Metadata,
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
    if let Some(v4) = leads_to_v4(IpAddr::V6(ip)) {
        // The connection goes to the IPv4 address, so judge that.
        return classify_v4(v4);
    }
    match s {
        _ if METADATA_ADDRESSES.contains(&IpAddr::V6(ip)) => Reach::Metadata,
        [0, 0, 0, 0, 0, 0, 0, 0] => Reach::Never("the unspecified address"),
        [0, 0, 0, 0, 0, 0, 0, 1] => Reach::Private("a loopback address"),
        [0, 0, 0, 0, 0, _, _, _] => Reach::Never("an IPv4-compatible or reserved address"),
        [0x64, 0xff9b, 1, ..] => Reach::Private("a local-use NAT64 address"),
        [0x100, 0, 0, 0, ..] => Reach::Never("a discard-only address"),
        [0x2001, 0xdb8, ..] => Reach::Never("a documentation address"),
        [0x3fff, b, ..] if b < 0x1000 => Reach::Never("a documentation address"),
        // Teredo tunnels to an obscured IPv4 address that cannot be judged here.
        [0x2001, 0, ..] => Reach::Never("a Teredo address"),
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

/// Whether Slipway may connect to `ip` under `policy`. Public addresses always; loopback,
/// private, shared and link-local ones with `allow_private` or when listed; metadata services
/// only when listed; unspecified, multicast, broadcast, documentation and reserved ones never.
/// IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they lead to.
pub fn address_allowed(ip: IpAddr, policy: &TargetPolicy) -> bool {
    refusal(ip, policy).is_none()
}

/// Why `ip` is refused, or `None` when it is allowed.
fn refusal(ip: IpAddr, policy: &TargetPolicy) -> Option<String> {
    match classify(ip) {
        Reach::Public => None,
        Reach::Private(_) if policy.allow_private || policy.lists(ip) => None,
        Reach::Private(kind) => Some(format!(
            "{ip} is {kind}; private, loopback and link-local targets are refused unless the operator allows them (allow_private_webhook_targets, allowed_private_networks)"
        )),
        Reach::Metadata if policy.lists(ip) => None,
        Reach::Metadata => Some(format!(
            "{ip} is a cloud metadata service; it is refused unless allowed_private_networks lists it"
        )),
        Reach::Never(kind) => Some(format!("{ip} is {kind} and is never a webhook target")),
    }
}

/// Refuses what different URL parsers could read differently, so that the host a check sees is
/// the host every client (reqwest, libcurl in git, a proxy) connects to: a backslash (which
/// WHATWG parsers take for `/` in http URLs and others do not, the `https://evil\@good` trick),
/// a control character or whitespace (WHATWG parsers silently drop tabs and newlines), or a
/// `%` in the authority (decoded by some parsers only). Returns the parsed URL.
pub fn parse_unambiguous(url: &str) -> Result<Url, String> {
    if url.contains('\\') {
        return Err("the URL contains a backslash, which URL parsers read differently".to_owned());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL contains whitespace or a control character".to_owned());
    }
    let parsed = Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('%') {
            return Err(
                "the URL's host or user name is percent-encoded, which URL parsers read differently"
                    .to_owned(),
            );
        }
        if authority.matches('@').count() > 1 {
            return Err("the URL's authority has more than one '@'".to_owned());
        }
    }
    Ok(parsed)
}

/// The origin a URL's requests go to, as reqwest (whose parser this is) reads it: the scheme,
/// the host in lower case without a final dot (`API.example.com.` is `api.example.com`), and
/// the port, explicit or the scheme's default (ssh's is 22). `None` when it is no URL or has
/// no host.
pub fn origin_of(url: &str) -> Option<(String, String, u16)> {
    let url = Url::parse(url).ok()?;
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    let port = url
        .port_or_known_default()
        .or_else(|| (url.scheme() == "ssh").then_some(22))
        .unwrap_or(0);
    Some((url.scheme().to_ascii_lowercase(), host, port))
}

/// Checks a webhook target URL when it is configured (and again before sending): http or https,
/// unambiguous ([`parse_unambiguous`]), no user name or password, a host, at most
/// [`MAX_URL_LEN`] bytes, and a literal address or a `localhost` name only when
/// [`address_allowed`] says so. A domain name is resolved and checked at send time by
/// [`check_resolved`].
pub fn check_target_url(url: &str, policy: &TargetPolicy) -> Result<TargetUrl, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} bytes"));
    }
    let parsed = parse_unambiguous(url.trim())?;
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
        Some(Host::Ipv4(ip)) => refuse_if(IpAddr::V4(ip), policy)?,
        Some(Host::Ipv6(ip)) => refuse_if(IpAddr::V6(ip), policy)?,
        Some(Host::Domain(domain)) => {
            // `localhost` and its subdomains resolve to loopback by definition (RFC 6761), so
            // they are refused here already, rather than only after resolution, unless the
            // policy allows loopback.
            let name = domain.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err("the URL has no host".to_owned());
            }
            let loopback_allowed = address_allowed(IpAddr::V4(Ipv4Addr::LOCALHOST), policy)
                || address_allowed(IpAddr::V6(Ipv6Addr::LOCALHOST), policy);
            if (name == "localhost" || name.ends_with(".localhost")) && !loopback_allowed {
                return Err(format!(
                    "{domain} is a loopback name; loopback targets are refused unless the operator allows them"
                ));
            }
        }
    }
    Ok(TargetUrl { url: parsed })
}

fn refuse_if(ip: IpAddr, policy: &TargetPolicy) -> Result<(), String> {
    match refusal(ip, policy) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// At send time: the addresses to connect to for `target`, given every address its host
/// resolved to (for a literal-address host, pass that address). Refuses when there is none or
/// when **any** of them is refused, since a name that also points inside the network is not a
/// public target; otherwise returns each address once, in the resolver's order, with the
/// target's port, for the client to try in turn (and nothing else).
pub fn check_resolved(
    target: &TargetUrl,
    addresses: &[IpAddr],
    policy: &TargetPolicy,
) -> Result<Vec<SocketAddr>, String> {
    if addresses.is_empty() {
        return Err(format!("{} resolved to no address", target.host()));
    }
    let mut checked: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    for ip in addresses {
        if let Some(reason) = refusal(*ip, policy) {
            return Err(format!("{} resolves to {reason}", target.host()));
        }
        let address = SocketAddr::new(*ip, target.port());
        if !checked.contains(&address) {
            checked.push(address);
        }
    }
    Ok(checked)
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
        ("169.254.169.253", false, true),
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
        ("::ffff:169.254.1.1", false, true),
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
        // Cloud metadata services: not even with allow_private.
        ("169.254.169.254", false, false),
        ("169.254.170.2", false, false),
        ("100.100.100.200", false, false),
        ("fd00:ec2::254", false, false),
        ("::ffff:169.254.169.254", false, false),
        ("64:ff9b::a9fe:a9fe", false, false),
        ("2002:a9fe:a9fe::1", false, false),
    ];

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn listing(networks: &[&str]) -> TargetPolicy {
        TargetPolicy {
            allow_private: false,
            allowed_networks: networks.iter().map(|n| net(n)).collect(),
        }
    }

    /// The most an operator can allow: every private address, and every network listed.
    fn everything() -> TargetPolicy {
        TargetPolicy {
            allow_private: true,
            allowed_networks: vec![net("0.0.0.0/0"), net("::/0")],
        }
    }

    #[test]
    fn address_table() {
        for &(text, public, private) in TABLE {
            let public_only = TargetPolicy::public_only();
            assert_eq!(
                address_allowed(ip(text), &public_only),
                public,
                "{text} without"
            );
            let private_too = TargetPolicy::allow_private();
            assert_eq!(
                address_allowed(ip(text), &private_too),
                private,
                "{text} with"
            );
        }
    }

    /// The ranges the documentation promises, written as networks: an oracle independent of the
    /// match arms in `classify_v4`, which the property test below holds them to.
    const PRIVATE_V4: [&str; 6] = [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
    ];
    const NEVER_V4: [&str; 10] = [
        "0.0.0.0/8",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "192.88.99.0/24",
        "255.255.255.255/32",
    ];

    fn in_any(ranges: &[&str], ip: Ipv4Addr) -> bool {
        ranges.iter().any(|r| net(r).contains(IpAddr::V4(ip)))
    }

    proptest! {
        /// Every IPv4 address gets what the documented ranges say, under each policy: the never
        /// ranges stay refused even when everything is allowed and listed, the metadata services
        /// need a listing, allow_private opens exactly the private ranges, and public addresses
        /// need nothing. The same holds for each address's IPv4-mapped form.
        #[test]
        fn policies_open_exactly_the_documented_ranges(octets in any::<[u8; 4]>()) {
            let v4 = Ipv4Addr::from(octets);
            let metadata = METADATA_ADDRESSES.contains(&IpAddr::V4(v4));
            let (never, private) = (in_any(&NEVER_V4, v4), in_any(&PRIVATE_V4, v4));
            let listed = listing(&[&format!("{v4}/32")]);
            for ip in [IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped())] {
                let public_only = address_allowed(ip, &TargetPolicy::public_only());
                let private_too = address_allowed(ip, &TargetPolicy::allow_private());
                let most = address_allowed(ip, &everything());
                let exact = address_allowed(ip, &listed);
                if never {
                    prop_assert!(!public_only && !private_too && !most && !exact, "{ip}");
                } else if metadata {
                    prop_assert!(!public_only && !private_too, "{ip}");
                    prop_assert!(most && exact, "{ip}");
                } else if private {
                    prop_assert!(!public_only, "{ip}");
                    prop_assert!(private_too && most && exact, "{ip}");
                } else {
                    prop_assert!(public_only && private_too && most && exact, "{ip}");
                }
            }
        }
    }

    #[test]
    fn listed_networks_open_only_themselves() {
        let policy = listing(&["10.20.0.0/16", "fd00:1::/64", "192.168.7.9"]);
        for allowed in [
            "10.20.0.1",
            "10.20.255.255",
            "fd00:1::5",
            "192.168.7.9",
            "8.8.8.8",
        ] {
            assert!(address_allowed(ip(allowed), &policy), "{allowed}");
        }
        for refused in [
            "10.21.0.1",
            "10.0.0.1",
            "127.0.0.1",
            "fd00:2::5",
            "192.168.7.10",
            "169.254.169.254",
            "0.0.0.0",
        ] {
            assert!(!address_allowed(ip(refused), &policy), "{refused}");
        }
        // The IPv6 forms that lead to a listed IPv4 address are judged by it.
        assert!(address_allowed(ip("::ffff:10.20.1.2"), &policy));
        assert!(address_allowed(ip("64:ff9b::a14:102"), &policy));
        // A metadata service needs a listing; allow_private is not enough, a listing is.
        let mut private = TargetPolicy::allow_private();
        assert!(!address_allowed(ip("169.254.169.254"), &private));
        assert!(address_allowed(ip("169.254.1.1"), &private));
        private.allowed_networks.push(net("169.254.169.254/32"));
        assert!(address_allowed(ip("169.254.169.254"), &private));
        assert!(!address_allowed(ip("fd00:ec2::254"), &private));
        // Never-ranges stay refused, listed or not.
        assert!(!address_allowed(
            ip("224.0.0.1"),
            &listing(&["224.0.0.0/4"])
        ));
    }

    #[test]
    fn networks_parse_strictly() {
        assert_eq!(net("10.20.0.0/16").to_string(), "10.20.0.0/16");
        assert_eq!(net(" 10.20.0.7 ").to_string(), "10.20.0.7/32");
        assert_eq!(net("fd00:1::/64").to_string(), "fd00:1::/64");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        for bad in [
            "10.20.1.0/16",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/x",
            "ten.0.0.0/8",
            "",
            "10.0.0.0/-1",
            "gitlab.internal",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
        let typo = "10.20.1.0/16".parse::<IpNetwork>().expect_err("refused");
        assert!(typo.contains("10.20.0.0/16"), "{typo}");
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
            assert!(check_target_url(url, &none()).is_ok(), "{url}");
        }
        let target = check_target_url("https://hooks.example.com/in", &none()).expect("valid");
        assert_eq!(target.domain(), Some("hooks.example.com"));
        assert_eq!(target.ip(), None);
        assert_eq!(target.port(), 443);
        let target = check_target_url("http://8.8.8.8:8080/x", &none()).expect("valid");
        assert_eq!(target.ip(), Some(ip("8.8.8.8")));
        assert_eq!(target.domain(), None);
        assert_eq!(target.port(), 8080);
        assert_eq!(target.host(), "8.8.8.8");
        assert_eq!(
            check_target_url("http://a.example", &none()).map(|t| t.port()),
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
            // What parsers read differently: the host is not what it seems to a person, or to
            // another client.
            "https://evil.example\\@hooks.example.com/",
            "https://hooks.example.com\\evil/",
            "https://hooks.exa\tmple.com/",
            "https://hooks.example.com/a\nb",
            "https://hooks%2eexample.com/",
            "https://a@b@hooks.example.com/",
        ] {
            assert!(check_target_url(url, &none()).is_err(), "{url}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_target_url(&long, &none()).is_err());
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
            assert!(check_target_url(url, &private()).is_ok(), "{url}");
        }
        for url in [
            "http://0.0.0.0/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://u:p@127.0.0.1/",
            "ftp://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
        ] {
            assert!(check_target_url(url, &private()).is_err(), "{url}");
        }
        // A listing of loopback admits the name that means loopback, and nothing else.
        let loopback = listing(&["127.0.0.0/8"]);
        assert!(check_target_url("http://localhost:9000/", &loopback).is_ok());
        assert!(check_target_url("http://127.0.0.1:9000/", &loopback).is_ok());
        assert!(check_target_url("http://10.0.0.1/", &loopback).is_err());
        assert!(check_target_url("http://localhost:9000/", &listing(&["10.0.0.0/8"])).is_err());
    }

    fn none() -> TargetPolicy {
        TargetPolicy::public_only()
    }

    fn private() -> TargetPolicy {
        TargetPolicy::allow_private()
    }

    #[test]
    fn origins_compare_what_the_client_connects_to() {
        let origin = |url: &str| {
            let origin = origin_of(url);
            assert!(origin.is_some(), "{url}");
            origin
        };
        assert_eq!(
            origin("https://API.GitHub.com./x"),
            origin("https://api.github.com:443/y")
        );
        assert_ne!(
            origin("https://api.github.com/"),
            origin("http://api.github.com/")
        );
        assert_ne!(
            origin("https://api.github.com/"),
            origin("https://api.github.com:8443/")
        );
        assert_ne!(
            origin("https://api.github.com/"),
            origin("https://api.github.com@evil.example/")
        );
        // reqwest's parser ends the authority at a backslash: this is evil.example.
        assert_eq!(
            origin("https://evil.example\\@api.github.com/"),
            origin("https://evil.example/")
        );
        assert_eq!(
            origin("ssh://git@git.example/a.git"),
            origin("ssh://git.example:22/b.git")
        );
        assert!(parse_unambiguous("https://evil.example\\@api.github.com/").is_err());
        assert!(parse_unambiguous("https://api.github.com/").is_ok());
    }

    #[test]
    fn normalised_form_is_what_is_sent() {
        let target = check_target_url("http://0x7f.1:9/", &private()).expect("allowed");
        assert_eq!(target.as_str(), "http://127.0.0.1:9/");
        assert_eq!(target.ip(), Some(ip("127.0.0.1")));
    }

    #[test]
    fn resolved_addresses_must_all_be_allowed() {
        let target = check_target_url("https://hooks.example.com:8443/in", &none()).expect("ok");
        // Every checked address is returned, once each, in the resolver's order, to be tried in
        // turn.
        assert_eq!(
            check_resolved(
                &target,
                &[
                    ip("8.8.8.8"),
                    ip("1.1.1.1"),
                    ip("8.8.8.8"),
                    ip("2606:4700::1")
                ],
                &none()
            ),
            Ok(vec![
                SocketAddr::new(ip("8.8.8.8"), 8443),
                SocketAddr::new(ip("1.1.1.1"), 8443),
                SocketAddr::new(ip("2606:4700::1"), 8443),
            ])
        );
        assert!(check_resolved(&target, &[], &none()).is_err());
        // A name that also points inside the network is refused, whichever address comes first.
        assert!(check_resolved(&target, &[ip("8.8.8.8"), ip("10.0.0.1")], &none()).is_err());
        assert!(check_resolved(&target, &[ip("10.0.0.1"), ip("8.8.8.8")], &none()).is_err());
        assert!(check_resolved(&target, &[ip("::ffff:127.0.0.1")], &none()).is_err());
        assert_eq!(
            check_resolved(&target, &[ip("127.0.0.1")], &private()),
            Ok(vec![SocketAddr::new(ip("127.0.0.1"), 8443)])
        );
        assert!(check_resolved(&target, &[ip("0.0.0.0")], &private()).is_err());
        assert!(check_resolved(&target, &[ip("169.254.169.254")], &private()).is_err());
        assert!(check_resolved(&target, &[ip("10.20.0.7")], &listing(&["10.20.0.0/16"])).is_ok());
    }

    #[test]
    fn debug_shows_only_the_origin() {
        let target = check_target_url(
            "https://hooks.example.com/services/T0/B0/capability?token=q",
            &none(),
        )
        .expect("ok");
        let debug = format!("{target:?}");
        assert_eq!(debug, "TargetUrl(https://hooks.example.com:443/…)");
    }

    #[test]
    fn refusals_explain_themselves() {
        let err = check_target_url("http://10.1.2.3/", &none()).expect_err("refused");
        assert!(err.contains("private"), "{err}");
        assert!(err.contains("allowed_private_networks"), "{err}");
        let err = check_target_url("http://224.0.0.1/", &private()).expect_err("refused");
        assert!(err.contains("multicast"), "{err}");
        let err = check_target_url("http://169.254.169.254/", &private()).expect_err("refused");
        assert!(err.contains("metadata"), "{err}");
    }

    proptest! {
        #[test]
        fn check_target_url_never_panics(input in any::<String>(), allow in any::<bool>()) {
            let policy = TargetPolicy { allow_private: allow, allowed_networks: Vec::new() };
            let _ = check_target_url(&input, &policy);
        }

        #[test]
        fn url_like_strings_never_panic_and_accepted_ones_are_sound(
            scheme in prop_oneof![Just("http"), Just("https"), Just("ftp"), Just("HTTP"), Just("")],
            rest in "[a-z0-9:@./\\[\\]%?#_\\-]{0,40}",
            allow in any::<bool>(),
        ) {
            let policy = TargetPolicy { allow_private: allow, allowed_networks: Vec::new() };
            if let Ok(target) = check_target_url(&format!("{scheme}://{rest}"), &policy) {
                prop_assert!(matches!(target.url().scheme(), "http" | "https"));
                prop_assert!(target.url().username().is_empty());
                prop_assert!(target.url().password().is_none());
                prop_assert!(!target.host().is_empty());
                if let Some(ip) = target.ip() {
                    prop_assert!(address_allowed(ip, &policy));
                }
            }
        }

        #[test]
        fn mapped_addresses_are_judged_like_their_ipv4(octets in any::<[u8; 4]>(), allow in any::<bool>()) {
            let v4 = Ipv4Addr::from(octets);
            let policy = TargetPolicy { allow_private: allow, allowed_networks: Vec::new() };
            prop_assert_eq!(
                address_allowed(IpAddr::V4(v4), &policy),
                address_allowed(IpAddr::V6(v4.to_ipv6_mapped()), &policy)
            );
        }
    }
}
