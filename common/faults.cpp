#include "common/faults.h"

namespace outpost {

const Faults& Faults::None() {
  static const Faults none;
  return none;
}

const std::vector<std::string>& Faults::Names() {
  static const std::vector<std::string> names = {"ack-before-durable", "forget-watermark",
                                                 "apply-gaps", "bundle-replay"};
  return names;
}

Result<Faults> Faults::Parse(const std::string& name) {
  Faults f;
  if (name == "none") return f;
  if (name == "ack-before-durable") {
    f.ack_before_durable = true;
  } else if (name == "forget-watermark") {
    f.forget_watermark = true;
  } else if (name == "apply-gaps") {
    f.apply_gaps = true;
  } else if (name == "bundle-replay") {
    f.bundle_replay = true;
  } else {
    return Status::InvalidArgument("unknown fault '" + name + "'");
  }
  return f;
}

}  // namespace outpost
