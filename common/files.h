// Writing a file so a reader never sees half of it.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace outpost {

// Writes `text` to `path` through `path`.tmp and a rename; with `durable` the data is
// synced before the rename. A full disk is kResourceExhausted; the temporary file is
// removed on failure.
Status WriteFileAtomically(const std::string& path, std::string_view text, bool durable);

}  // namespace outpost
