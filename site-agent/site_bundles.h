// The site's side of bundles, without I/O: what a volume from the hub does to a site, and
// the return volume a site writes (docs/protocol.md, "Bundles"). The agent
// (site-agent/agent_bundles.cpp) and the simulator (simulator/world.cpp) both call these,
// so a courier in the simulator runs the same code as a USB stick at a plant.
//
// Import: the header is checked (a volume for this site, sealed by the hub it trusts),
// then each record is opened in order and applied through the site's own hooks: commands
// at or below the inbox watermark are skipped, a record starting past watermark+1 is a gap
// (reported; nothing from it applied), the rest go to apply_commands (which writes them
// with the new watermark in one batch); the hub's watermark of the site's events
// acknowledges them as an ACK would; artifact chunks go to put_chunk. A damaged record
// stops the import there: what came before it was authentic and stays applied.
//
// Thread-safety: stateless functions; the hooks run on the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/bundle.h"
#include "common/protocol/event_log.h"
#include "common/status.h"

namespace outpost {

struct SiteBundleHooks {
  uint64_t incarnation = 0;  // the site's database
  std::function<uint64_t()> down_applied;
  std::function<Status(uint64_t first_seq, const std::vector<std::string>& entries)> apply_commands;
  std::function<uint64_t()> log_head;
  std::function<uint64_t()> log_acked;
  std::function<Status(uint64_t seq)> ack_events;
  // An artifact chunk (authentic); true when it completed a verified artifact. Unset:
  // chunks are skipped.
  std::function<Result<bool>(const BundleRecord& chunk)> put_chunk;
  std::function<void(size_t records_done)> after_record;  // test kill switch
};

struct SiteImport {
  uint64_t received = 0, applied = 0, duplicates = 0, chunks = 0;
  std::vector<std::pair<std::string, uint64_t>> completed;  // artifacts (digest, size)
  std::optional<std::pair<uint64_t, uint64_t>> gap;         // commands missing from..to
  std::string problem;                                      // why it stopped early
};

// Whether a volume with header `h` is for the site with public key `my_public`, sealed by
// the hub whose key the site pins.
Status CheckDownHeader(const BundleHeader& h, const std::string& my_public,
                       const std::string& hub_key);

// Applies the records `reader` (past ReadHead) yields.
SiteImport ImportDownVolume(BundleReader& reader, const CurveKeys& my, const SiteBundleHooks& hooks);

// The return volume: every event after what the hub acknowledged, and `down_applied`.
Result<std::string> ExportUpVolume(const EventLog& log, uint64_t down_applied, const CurveKeys& my,
                                   const std::string& hub_key, const std::string& site,
                                   const std::string& id, TimeMs now, BundleHeader* header);

}  // namespace outpost
