// Faults: the one seam for planted bugs — the simulator's mutation check
// (`outpost-sim --mutate NAME`, docs/simulator.md) switches them on at run time to prove
// that its invariants catch a broken guarantee. The daemons never set any: they pass
// Faults::None(), and every fault point reads `faults.NAME` where the bug would be.
//
// Adding one: a field here, its name in Faults::Parse, the fault point in the code, a row
// in docs/simulator.md, and a ctest that expects the simulator to catch it.
//
// Thread-safety: a plain value, copied into each core that has fault points.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace outpost {

struct Faults {
  // Hub: acknowledge upstream batches at once and write them a second later.
  bool ack_before_durable = false;
  // Hub: start with every upstream watermark at 0 (the store's are ignored).
  bool forget_watermark = false;
  // Sync session: apply a batch that starts past the watermark as if it were next.
  bool apply_gaps = false;
  // Hub: apply a return bundle's events from its first entry, ignoring the watermark.
  bool bundle_replay = false;

  static const Faults& None();
  // "ack-before-durable", "forget-watermark", "apply-gaps", "bundle-replay"; "none".
  static Result<Faults> Parse(const std::string& name);
  static const std::vector<std::string>& Names();
};

}  // namespace outpost
