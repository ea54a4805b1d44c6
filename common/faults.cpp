#include "common/faults.h"

#include <utility>

namespace outpost {

namespace {

// Every fault by its name on the command line.
const std::vector<std::pair<std::string, bool Faults::*>>& Table() {
  static const std::vector<std::pair<std::string, bool Faults::*>> table = {
      {"ack-before-durable", &Faults::ack_before_durable},
      {"forget-watermark", &Faults::forget_watermark},
      {"apply-gaps", &Faults::apply_gaps},
      {"ack-failed-apply", &Faults::ack_failed_apply},
      {"bundle-replay", &Faults::bundle_replay},
      {"hub-store-unsynced", &Faults::hub_store_unsynced},
      {"site-log-unsynced", &Faults::site_log_unsynced},
      {"split-commit", &Faults::split_commit},
      {"ignore-incarnation", &Faults::ignore_incarnation},
      {"forget-requests", &Faults::forget_requests},
      {"run-view-drops-run-end", &Faults::run_view_drops_run_end},
      {"trim-on-send", &Faults::trim_on_send},
      {"extra-retry", &Faults::extra_retry},
      {"restore-as-succeeded", &Faults::restore_as_succeeded},
      {"failed-counts-as-success", &Faults::failed_counts_as_success},
      {"schedule-forgets-fired", &Faults::schedule_forgets_fired},
      {"restore-reuses-commands", &Faults::restore_reuses_commands},
      {"apply-without-cas", &Faults::apply_without_cas},
  };
  return table;
}

}  // namespace

const Faults& Faults::None() {
  static const Faults none;
  return none;
}

const std::vector<std::string>& Faults::Names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [name, field] : Table()) n.push_back(name);
    return n;
  }();
  return names;
}

Result<Faults> Faults::Parse(const std::string& name) {
  Faults f;
  if (name == "none") return f;
  for (const auto& [n, field] : Table()) {
    if (n == name) {
      f.*field = true;
      return f;
    }
  }
  std::string all;
  for (const auto& n : Names()) all += (all.empty() ? "" : ", ") + n;
  return Status::InvalidArgument("unknown fault '" + name + "' (" + all + ")");
}

}  // namespace outpost
