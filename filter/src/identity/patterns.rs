//! Whose certificate labels are believed.

use super::PeerCert;

const MAX_SPIFFE_ID: usize = 2048;
const MAX_DNS_NAME: usize = 253;
const MAX_DNS_LABEL: usize = 63;

/// Whose certificate labels are believed: a SPIFFE ID pattern
/// (`spiffe://cluster.local/ns/qa/*`), a DNS name pattern (`*.qa.example.com`)
/// or a lone `*` (any verified certificate).
///
/// A `*` segment matches exactly one non-empty segment (`/`-separated for
/// SPIFFE, `.`-separated for DNS), except that a trailing `/*` in a SPIFFE
/// path matches one or more remaining segments. `*` inside a segment is an
/// error. SPIFFE matching is case-sensitive, DNS matching ASCII
/// case-insensitive. Identities are only matched if well-formed (SPIFFE:
/// trust domain `[a-z0-9._-]`, path segments `[A-Za-z0-9._-]` other than `.`
/// and `..`; DNS: labels `[A-Za-z0-9_-]`), so a wildcard never matches an odd
/// segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPattern {
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Any,
    /// Trust domain then path segments; `tail`: the last `*` takes 1+ segments.
    Spiffe {
        segments: Vec<Segment>,
        tail: bool,
    },
    Dns(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Wild,
    Literal(String),
}

impl PeerPattern {
    pub fn parse(s: &str) -> Result<PeerPattern, String> {
        if s == "*" {
            return Ok(PeerPattern {
                kind: PatternKind::Any,
            });
        }
        if let Some(rest) = s.strip_prefix("spiffe://") {
            if s.len() > MAX_SPIFFE_ID {
                return Err(format!("peer pattern longer than {MAX_SPIFFE_ID} bytes"));
            }
            let mut segments = Vec::new();
            for (i, seg) in rest.split('/').enumerate() {
                segments.push(pattern_segment(s, seg, |seg| spiffe_segment_ok(i, seg))?);
            }
            let tail = segments.len() > 1 && segments.last() == Some(&Segment::Wild);
            return Ok(PeerPattern {
                kind: PatternKind::Spiffe { segments, tail },
            });
        }
        if s.contains("://") {
            return Err(format!("peer pattern {s:?}: only spiffe:// URIs are supported"));
        }
        if s.len() > MAX_DNS_NAME {
            return Err(format!("peer pattern {s:?}: DNS name longer than {MAX_DNS_NAME}"));
        }
        let labels = s
            .split('.')
            .map(|label| pattern_segment(s, label, dns_label_ok))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerPattern {
            kind: PatternKind::Dns(labels),
        })
    }

    /// Whether `identity` (a SPIFFE ID or DNS name) matches.
    pub fn matches(&self, identity: &str) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Spiffe { segments, tail } => {
                let Some(rest) = identity.strip_prefix("spiffe://") else {
                    return false;
                };
                if identity.len() > MAX_SPIFFE_ID {
                    return false;
                }
                let ids: Vec<&str> = rest.split('/').collect();
                if !ids.iter().enumerate().all(|(i, seg)| spiffe_segment_ok(i, seg)) {
                    return false;
                }
                let length_ok = if *tail {
                    ids.len() >= segments.len()
                } else {
                    ids.len() == segments.len()
                };
                length_ok
                    && segments.iter().zip(&ids).all(|(pat, id)| match pat {
                        Segment::Wild => true,
                        Segment::Literal(lit) => lit == id,
                    })
            }
            PatternKind::Dns(labels) => {
                if identity.len() > MAX_DNS_NAME {
                    return false;
                }
                let ids: Vec<&str> = identity.split('.').collect();
                ids.len() == labels.len()
                    && ids.iter().all(|l| dns_label_ok(l))
                    && labels.iter().zip(&ids).all(|(pat, id)| match pat {
                        Segment::Wild => true,
                        Segment::Literal(lit) => lit.eq_ignore_ascii_case(id),
                    })
            }
        }
    }
}

fn pattern_segment(pattern: &str, seg: &str, ok: impl Fn(&str) -> bool) -> Result<Segment, String> {
    if seg == "*" {
        Ok(Segment::Wild)
    } else if seg.contains('*') {
        Err(format!("peer pattern {pattern:?}: `*` must be a whole segment"))
    } else if ok(seg) {
        Ok(Segment::Literal(seg.to_owned()))
    } else {
        Err(format!("peer pattern {pattern:?}: bad segment {seg:?}"))
    }
}

/// SPIFFE ID segment `index` (0 is the trust domain).
fn spiffe_segment_ok(index: usize, seg: &str) -> bool {
    let chars_ok = if index == 0 {
        seg.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    } else {
        seg.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && seg != "."
            && seg != ".."
    };
    !seg.is_empty() && chars_ok
}

fn dns_label_ok(label: &str) -> bool {
    (1..=MAX_DNS_LABEL).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PeerCert {
    /// Whether any pattern matches this certificate: a lone `*` matches any
    /// certificate, SPIFFE patterns are checked against [`PeerCert::spiffe_id`],
    /// DNS patterns against every DNS SAN.
    pub fn is_trusted(&self, patterns: &[PeerPattern]) -> bool {
        patterns.iter().any(|p| match &p.kind {
            PatternKind::Any => true,
            PatternKind::Spiffe { .. } => self.spiffe_id.as_deref().is_some_and(|id| p.matches(id)),
            PatternKind::Dns(_) => self.dns.iter().any(|d| p.matches(d)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fixtures::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn trust_patterns() {
        let cases = [
            ("*", "spiffe://cluster.local/ns/qa/sa/tester", true),
            ("*", "anything", true),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/tester",
                true,
            ),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/Tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/tester/x",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa/tester",
                true,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa",
                true,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa//x",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/prod/sa/tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://Cluster.local/ns/qa/sa/tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "SPIFFE://cluster.local/ns/qa/sa/tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa/../x",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa?x=1",
                false,
            ),
            (
                "spiffe://cluster.local/ns/*/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/tester",
                true,
            ),
            (
                "spiffe://cluster.local/ns/*/sa/tester",
                "spiffe://cluster.local/ns/qa/x/sa/tester",
                false,
            ),
            (
                "spiffe://*/ns/qa/sa/tester",
                "spiffe://other.domain/ns/qa/sa/tester",
                true,
            ),
            ("spiffe://cluster.local/ns/qa/*", "api.qa.example.com", false),
            ("*.qa.example.com", "api.qa.example.com", true),
            ("*.qa.example.com", "API.QA.Example.COM", true),
            ("*.qa.example.com", "a.b.qa.example.com", false),
            ("*.qa.example.com", "qa.example.com", false),
            ("*.qa.example.com", ".qa.example.com", false),
            ("*.qa.example.com", "*.qa.example.com", false),
            ("*.qa.example.com", "api.qa.example.com.", false),
            ("*.qa.example.com", "spiffe://api.qa.example.com", false),
            ("api.*.example.com", "api.qa.example.com", true),
            ("api.qa.example.com", "api.qa.example.com", true),
            ("api.qa.example.com", "web.qa.example.com", false),
        ];
        for (pattern, identity, want) in cases {
            let p = PeerPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(identity), want, "{pattern} vs {identity}");
        }
        for bad in [
            "",
            "a*b.example.com",
            "*api.example.com",
            "spiffe://cluster.local/ns/qa/sa-*",
            "spiffe://cluster.local/ns/qa/**",
            "spiffe://cluster.local/ns/qa/",
            "spiffe://cluster.local//qa",
            "spiffe://",
            "spiffe://Cluster.local/ns/qa",
            "spiffe://cluster.local/ns/../x",
            "https://example.com/*",
            "SPIFFE://cluster.local/ns/qa/*",
            "example..com",
            "example.com.",
            "exa mple.com",
            "**",
        ] {
            assert!(PeerPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trusted_certificates() {
        let qa = [PeerPattern::parse("spiffe://cluster.local/ns/qa/*").unwrap()];
        let web = [PeerPattern::parse("web.qa.example.com").unwrap()];
        let any = [PeerPattern::parse("*").unwrap()];
        assert!(parse(SPIFFE_PEM).is_trusted(&qa));
        assert!(!parse(SPIFFE_PEM).is_trusted(&web));
        assert!(!parse(DNS_PEM).is_trusted(&qa));
        assert!(parse(DNS_PEM).is_trusted(&web));
        assert!(parse(CA_PEM).is_trusted(&any));
        assert!(!parse(CA_PEM).is_trusted(&qa));
        assert!(!parse(SPIFFE_PEM).is_trusted(&[]));
        let both = [web[0].clone(), qa[0].clone()];
        assert!(parse(SPIFFE_PEM).is_trusted(&both) && parse(DNS_PEM).is_trusted(&both));
        // Only the first SPIFFE URI is the SPIFFE ID.
        let cert = PeerCert {
            spiffe_id: Some("spiffe://cluster.local/ns/prod/sa/x".into()),
            uris: vec!["spiffe://cluster.local/ns/prod/sa/x".into(), SPIFFE.into()],
            ..PeerCert::default()
        };
        assert!(!cert.is_trusted(&qa));
    }
}
