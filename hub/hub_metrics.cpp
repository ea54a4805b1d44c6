// The hub core's metrics (docs/operations.md, "Monitoring"): the fleet, each site's
// backlog and health, runs, the protocol's counters and refusals, operator requests.
// Built at each scrape from the core's state; the driver adds its own (the store's
// commit latency, handshake failures at the transport, HTTP requests).

#include <set>

#include "hub/hub_core.h"

namespace outpost {

namespace {

using T = Exposition::Type;

double Seconds(TimeMs t) { return static_cast<double>(t) / 1000.0; }

}  // namespace

void HubCore::Metrics(Exposition* x) const {
  const auto& c = counters_;
  auto counter = [x](const char* name, const char* help, uint64_t v) {
    x->Family(name, T::kCounter, help);
    x->Sample(static_cast<double>(v));
  };

  // The fleet.
  size_t online_n = 0, enrolled = 0, pending = 0, revoked = 0;
  for (const auto& [name, s] : sites_) {
    switch (s.site_state()) {
      case SiteState::kEnrolled: ++enrolled; break;
      case SiteState::kPending: ++pending; break;
      case SiteState::kRevoked: ++revoked; break;
    }
    if (s.site_state() == SiteState::kEnrolled && online(name)) ++online_n;
  }
  x->Family("outpost_hub_sites", T::kGauge,
            "Sites by state: online and offline are enrolled sites with and without a session.");
  x->Sample(static_cast<double>(online_n), {{"state", "online"}});
  x->Sample(static_cast<double>(enrolled - online_n), {{"state", "offline"}});
  x->Sample(static_cast<double>(pending), {{"state", "pending"}});
  x->Sample(static_cast<double>(revoked), {{"state", "revoked"}});

  // Per enrolled site.
  std::vector<const SiteRecord*> rows;
  std::set<std::string> health_fields;
  for (const auto& [name, s] : sites_) {
    if (s.site_state() != SiteState::kEnrolled) continue;
    rows.push_back(&s);
    for (const auto& [k, v] : s.health) health_fields.insert(k);
  }
  x->Family("outpost_hub_site_up", T::kGauge, "1 while the site has a session with the hub.");
  for (const auto* s : rows) x->Sample(online(s->name) ? 1 : 0, {{"site", s->name}});
  x->Family("outpost_hub_site_last_seen_timestamp_seconds", T::kGauge,
            "When the hub last heard from the site (Unix time, the hub's clock; 0: never).");
  for (const auto* s : rows) x->Sample(Seconds(s->last_seen), {{"site", s->name}});
  x->Family("outpost_hub_site_events_behind", T::kGauge,
            "Events the site reported logging that have not reached the hub.");
  for (const auto* s : rows) {
    x->Sample(static_cast<double>(s->up_head > s->up_applied ? s->up_head - s->up_applied : 0),
              {{"site", s->name}});
  }
  x->Family("outpost_hub_site_commands_pending", T::kGauge,
            "Commands enqueued for the site that it has not acknowledged applying.");
  for (const auto* s : rows) {
    x->Sample(static_cast<double>(s->down_head > s->down_acked ? s->down_head - s->down_acked : 0),
              {{"site", s->name}});
  }
  x->Family("outpost_hub_site_events_received_total", T::kCounter,
            "Events received from the site, over all its incarnations.");
  for (const auto* s : rows) x->Sample(static_cast<double>(s->events_total), {{"site", s->name}});
  x->Family("outpost_hub_site_commands_refused_total", T::kCounter,
            "Commands the site refused (command.rejected events).");
  for (const auto* s : rows) {
    x->Sample(static_cast<double>(s->commands_refused), {{"site", s->name}});
  }
  // The health each site sends up its event stream (site.health), so it is seen where
  // nobody can reach the site.
  x->Family("outpost_site_health_timestamp_seconds", T::kGauge,
            "When the site took its last health summary (Unix time, the site's clock).");
  for (const auto* s : rows) {
    if (s->health_at > 0) x->Sample(Seconds(s->health_at), {{"site", s->name}});
  }
  for (const auto& field : health_fields) {
    x->Family("outpost_site_" + field, T::kGauge,
              "From the site's health summary (docs/operations.md, \"Monitoring\").");
    for (const auto* s : rows) {
      auto it = s->health.find(field);
      if (it != s->health.end()) x->Sample(it->second, {{"site", s->name}});
    }
  }

  // Runs (counted as they change, not read at each scrape).
  x->Family("outpost_hub_runs", T::kGauge, "Runs in the hub's run view, by state.");
  for (const auto& [state, n] : run_counts_) x->Sample(static_cast<double>(n), {{"state", state}});
  x->Family("outpost_hub_workflows", T::kGauge, "Workflow definitions applied at the hub.");
  x->Sample(static_cast<double>(defs_.size()));
  uint64_t kept = 0;
  for (const auto& [name, s] : sites_) kept += s.up_kept_bytes();
  x->Family("outpost_hub_site_events_kept_bytes", T::kGauge,
            "Bytes of the hub's copies of site events kept (retention counts from when it was "
            "enabled).");
  x->Sample(static_cast<double>(kept));
  x->Family("outpost_hub_site_events_trimmed_bytes_total", T::kCounter,
            "Bytes of site event copies trimmed by retention, by the limit that trimmed them.");
  x->Sample(static_cast<double>(c.retention_age_bytes), {{"limit", "age"}});
  x->Sample(static_cast<double>(c.retention_budget_bytes), {{"limit", "budget"}});
  x->Sample(static_cast<double>(c.retention_quota_bytes), {{"limit", "quota"}});
  x->Family("outpost_hub_store_bytes", T::kGauge, "Approximate size of the hub's store on disk.");
  x->Sample(static_cast<double>(store_->ApproximateSize()));
  x->Family("outpost_hub_epoch", T::kGauge,
            "The hub epoch (0 until a restore from a backup is declared).");
  x->Sample(static_cast<double>(hub_epoch_));

  // Traffic and the protocol.
  counter("outpost_hub_events_applied_total",
          "Site events applied to the hub's copies and run view (rate() of it is the ingest "
          "rate).",
          c.events_applied);
  counter("outpost_hub_commands_enqueued_total", "Commands appended to sites' command logs.",
          c.commands_enqueued);
  counter("outpost_hub_frames_received_total", "Frames received from sites.", c.frames_received);
  counter("outpost_hub_frames_malformed_total",
          "Frames that did not decode (bad msgpack, too deep, oversized, wrong version).",
          c.frames_malformed);
  counter("outpost_hub_handshakes_total", "Site sessions established (HELLO answered).",
          c.handshakes);
  counter("outpost_hub_group_syncs_total",
          "Flushes that made a group of held site batches durable (group commit).",
          c.group_syncs);
  counter("outpost_hub_group_batches_total",
          "Site batches made durable by those synced writes.", c.group_batches);
  counter("outpost_hub_group_early_writes_total",
          "Groups written before their flush because a read needed what they held (a run "
          "evicted from the cache) or a write could not wait (a site's acknowledgement of "
          "commands).",
          store_->early_group_writes());
  counter("outpost_hub_store_conflicts_total",
          "Writes refused because another hub process wrote the record first (retried).",
          c.store_conflicts);
  counter("outpost_hub_sessions_taken_over_total",
          "Sessions ended because another hub process applied the site's events.",
          c.sessions_taken_over);
  x->Family("outpost_hub_refusals_total", T::kCounter,
            "Frames, sessions and keys the hub refused, by reason.");
  const std::pair<const char*, uint64_t> refusals[] = {
      {"key_not_enrolled", c.keys_refused},
      {"pending_full", c.pending_refused},
      {"frame_not_enrolled", c.frames_refused},
      {"stale_connection", c.frames_stale},
      {"stale_incarnation", c.stale_incarnations},
      {"gap", c.gaps_refused},
      {"protocol", c.protocol_errors},
      {"stale_hub", c.stale_hub_refusals},
      {"site_ahead", c.sites_ahead},
      {"artifact_not_placed", c.artifact_requests_refused},
      {"bundle_record", c.bundle_records_refused}};
  for (const auto& [reason, n] : refusals) {
    x->Sample(static_cast<double>(n), {{"reason", reason}});
  }
  counter("outpost_hub_duplicates_dropped_total",
          "Site events received again at or below the hub's watermark (resends).",
          c.duplicates_dropped);
  counter("outpost_hub_events_undecodable_total",
          "Site events stored raw because they did not decode (left out of the run view).",
          c.events_undecodable);
  counter("outpost_hub_store_errors_total", "Hub store writes that failed.", c.store_errors);
  counter("outpost_hub_exceptions_total",
          "Handler bugs caught at the frame and operator boundaries.",
          c.frame_exceptions + c.operator_exceptions);
  counter("outpost_hub_events_lost_in_restore_total",
          "Site events a restored hub lacked that the sites had trimmed.",
          c.events_lost_in_restore);
  counter("outpost_hub_commands_adopted_in_restore_total",
          "Commands sites had applied past what a restored store saw acknowledged.",
          c.commands_adopted_in_restore);
  counter("outpost_hub_artifact_chunks_served_total", "Artifact chunks sent to sites.",
          c.artifact_chunks_served);
  counter("outpost_hub_bundles_exported_total", "Bundles exported for air-gapped sites.",
          c.bundles_exported);
  counter("outpost_hub_bundle_volumes_imported_total", "Bundle volumes imported from sites.",
          c.bundle_volumes_imported);

  // Operators.
  x->Family("outpost_hub_operator_requests_total", T::kCounter,
            "Operator requests by op (\"invalid\": refused by the decoder).");
  for (const auto& [op, n] : c.requests_by_op) x->Sample(static_cast<double>(n), {{"op", op}});
  x->Family("outpost_hub_operator_errors_total", T::kCounter,
            "Operator requests answered with ok=false, by op.");
  for (const auto& [op, n] : c.errors_by_op) x->Sample(static_cast<double>(n), {{"op", op}});
  counter("outpost_hub_operator_forbidden_total", "Operator requests above the operator's role.",
          c.operator_forbidden);
  x->Family("outpost_hub_scrape_errors", T::kGauge,
            "Parts of this scrape that could not be read or were left out.");
  x->Sample(static_cast<double>(x->errors()));
}

}  // namespace outpost
