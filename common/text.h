// Text from outside (the network, files, operators) made safe for where it goes: a log
// line, a terminal, a JSON document. Nothing here throws.
//
// Thread-safety: free functions, no state.
#pragma once

#include <string>
#include <string_view>

namespace outpost {

// Text from outside (network, files) made safe for a log line or a terminal: invalid UTF-8
// and control characters (but tab) become '?', and it is cut at max_len bytes with "...".
std::string SafeText(std::string_view text, size_t max_len = 512);

// True if `s` is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool ValidUtf8(std::string_view s);

}  // namespace outpost
