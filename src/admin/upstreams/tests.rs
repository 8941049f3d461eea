use super::*;

#[test]
fn addresses_that_cannot_be_connected_to_are_refused() {
    for bad in [
        "127.0.0.1:0",
        "0.0.0.0:80",
        "[::]:80",
        "224.0.0.1:80",
        "255.255.255.255:80",
    ] {
        assert!(parse_addr(bad).is_err(), "{bad} was accepted");
    }
    assert_eq!(
        parse_addr("[::1]:8080").unwrap(),
        "[::1]:8080".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn paths_name_targets() {
    let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let v6: SocketAddr = "[::1]:8080".parse().unwrap();
    assert_eq!(parse_path("/status"), Ok(None));
    assert_eq!(parse_path("/upstreamsx"), Ok(None));
    assert_eq!(parse_path("/upstreams"), Ok(Some(Target::List)));
    assert_eq!(parse_path("/upstreams/"), Ok(Some(Target::List)));
    assert_eq!(
        parse_path("/upstreams/app"),
        Ok(Some(Target::Group("app".into())))
    );
    assert_eq!(
        parse_path("/upstreams/app/backends"),
        Ok(Some(Target::Backends("app".into())))
    );
    assert_eq!(
        parse_path("/upstreams/app/backends/127.0.0.1:8080"),
        Ok(Some(Target::Backend("app".into(), a)))
    );
    assert_eq!(
        parse_path("/upstreams/app/backends/127.0.0.1%3A8080"),
        Ok(Some(Target::Backend("app".into(), a)))
    );
    assert_eq!(
        parse_path("/upstreams/app/backends/[::1]:8080"),
        Ok(Some(Target::Backend("app".into(), v6)))
    );
    assert_eq!(
        parse_path("/upstreams/app/backends/%5B%3A%3A1%5D%3A8080"),
        Ok(Some(Target::Backend("app".into(), v6)))
    );
    for bad in [
        "/upstreams/app/backends/localhost:80",
        "/upstreams/app/backends/10.0.0.1",
        "/upstreams/app/backends/%zz",
    ] {
        assert_eq!(
            parse_path(bad).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    for missing in [
        "/upstreams//backends",
        "/upstreams/app/other",
        "/upstreams/app/backends/127.0.0.1:1/x",
    ] {
        assert_eq!(
            parse_path(missing).unwrap_err().status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

#[test]
fn add_bodies() {
    assert_eq!(
        parse_add(br#"{"addr": "10.0.0.5:8080", "weight": 2}"#),
        Ok(AddRequest {
            addr: "10.0.0.5:8080".parse().unwrap(),
            weight: 2
        })
    );
    assert_eq!(
        parse_add(br#"{"addr": "[::1]:81"}"#).unwrap().weight,
        1,
        "weight defaults to 1"
    );
    for bad in [
        &b""[..],
        b"  ",
        b"{",
        b"[]",
        br#"{"weight": 2}"#,
        br#"{"addr": "backend:80"}"#,
        br#"{"addr": "10.0.0.5"}"#,
        br#"{"addr": "10.0.0.5:80", "weight": 0}"#,
        br#"{"addr": "10.0.0.5:80", "weight": 1001}"#,
        br#"{"addr": "10.0.0.5:80", "weight": "2"}"#,
        br#"{"addr": "10.0.0.5:80", "extra": 1}"#,
    ] {
        assert_eq!(
            parse_add(bad).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn patch_bodies() {
    assert_eq!(
        parse_patch(br#"{"state": "drain"}"#),
        Ok(PatchRequest {
            state: Some(State::Drain),
            weight: None
        })
    );
    assert_eq!(
        parse_patch(br#"{"state": "enabled", "weight": 5}"#),
        Ok(PatchRequest {
            state: Some(State::Enabled),
            weight: Some(5)
        })
    );
    for bad in [
        &b"{}"[..],
        br#"{"state": "removed"}"#,
        br#"{"state": "DRAIN"}"#,
        br#"{"weight": -1}"#,
        br#"{"state": "drain", "addr": "1.2.3.4:5"}"#,
        b"state=drain",
    ] {
        assert_eq!(
            parse_patch(bad).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn force_query() {
    assert_eq!(parse_force(None), Ok(false));
    assert_eq!(parse_force(Some("force=true")), Ok(true));
    assert_eq!(parse_force(Some("force=1")), Ok(true));
    assert_eq!(parse_force(Some("force=false")), Ok(false));
    assert_eq!(
        parse_force(Some("force=yes")).unwrap_err().status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        parse_force(Some("other=1")).unwrap_err().status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn change_errors_map_to_statuses() {
    let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let status = |e| ApiError::from(e).status;
    assert_eq!(
        status(ChangeError::UnknownBackend(a)),
        StatusCode::NOT_FOUND
    );
    assert_eq!(status(ChangeError::Exists(a)), StatusCode::CONFLICT);
    assert_eq!(status(ChangeError::WouldEmpty), StatusCode::CONFLICT);
    assert_eq!(status(ChangeError::Full(8)), StatusCode::CONFLICT);
}

#[test]
fn methods_per_target() {
    let b = Target::Backend("a".into(), "10.0.0.1:80".parse().unwrap());
    assert!(b.takes(&Method::PATCH) && b.takes(&Method::DELETE) && !b.takes(&Method::POST));
    let c = Target::Backends("a".into());
    assert!(c.takes(&Method::POST) && !c.takes(&Method::GET));
    assert_eq!(c.allow(), "POST");
    assert!(!Target::List.takes(&Method::DELETE));
}
