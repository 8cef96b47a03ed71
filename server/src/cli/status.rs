//! `open-clanker status`: the gateway's state as text or JSON.

use open_clanker_client::pb;

fn fmt_duration(d: &Option<prost_types::Duration>) -> String {
    let secs = d.as_ref().map(|d| d.seconds.max(0)).unwrap_or(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

pub(super) fn print_status(s: &pb::GetStatusResponse) {
    println!("open-clanker {}, up {}", s.version, fmt_duration(&s.uptime));
    println!("default provider: {}", s.default_provider);
    println!("spend today (UTC): ${:.4}", s.spend_today_usd);
    for u in &s.usage_today {
        println!(
            "  {}/{}: {} turns, {} in / {} out tokens, ${:.4}",
            u.provider, u.model, u.turns, u.input_tokens, u.output_tokens, u.cost_usd
        );
    }
    println!("providers:");
    for p in &s.providers {
        let state = if p.configured {
            "configured"
        } else {
            "not configured"
        };
        println!(
            "  {:<10} {:<15} {:<20} {}",
            p.name, state, p.default_model, p.base_url
        );
    }
    if let Some(st) = &s.store {
        if st.healthy {
            println!(
                "store: {}, healthy, {} sessions, {} messages",
                st.backend, st.session_count, st.message_count
            );
        } else {
            println!("store: {}, UNHEALTHY: {}", st.backend, st.error);
        }
        if !st.writable {
            println!("store: CANNOT WRITE: {}", st.write_error);
        }
    }
    if !s.channels.is_empty() {
        println!("channels:");
    }
    for c in &s.channels {
        let state = match (c.enabled, c.connected) {
            (false, _) => "off (no token)".to_string(),
            (true, true) => format!("connected as {}", c.bot_name),
            (true, false) => "not connected".to_string(),
        };
        let error = if c.last_error.is_empty() {
            String::new()
        } else {
            format!("  last error: {}", c.last_error)
        };
        println!("  {:<10} {state}{error}", c.name);
    }
}

pub(super) fn status_json(s: &pb::GetStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "uptime_secs": s.uptime.as_ref().map(|d| d.seconds).unwrap_or(0),
        "default_provider": s.default_provider,
        "spend_today_usd": s.spend_today_usd,
        "usage_today": s.usage_today.iter().map(|u| serde_json::json!({
            "provider": u.provider,
            "model": u.model,
            "turns": u.turns,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cost_usd": u.cost_usd,
        })).collect::<Vec<_>>(),
        "providers": s.providers.iter().map(|p| serde_json::json!({
            "name": p.name,
            "configured": p.configured,
            "base_url": p.base_url,
            "default_model": p.default_model,
        })).collect::<Vec<_>>(),
        "store": s.store.as_ref().map(|st| serde_json::json!({
            "backend": st.backend,
            "healthy": st.healthy,
            "sessions": st.session_count,
            "messages": st.message_count,
            "error": st.error,
            "writable": st.writable,
            "write_error": st.write_error,
        })),
        "channels": s.channels.iter().map(|c| serde_json::json!({
            "name": c.name,
            "enabled": c.enabled,
            "connected": c.connected,
            "bot_name": c.bot_name,
            "last_error": c.last_error,
        })).collect::<Vec<_>>(),
    })
}
