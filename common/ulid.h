// ULIDs: 128-bit ids that sort by creation time (48-bit ms timestamp, 80 random bits),
// written in Crockford base32 (26 characters). Run ids are "<site>-<ULID>", made on the
// site without asking anyone.
#pragma once

#include <string>

#include "common/clock.h"
#include "common/random.h"

namespace outpost {

std::string MakeUlid(TimeMs now, Rng* rng);

}  // namespace outpost
