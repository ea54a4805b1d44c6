#include "common/text.h"

#include <algorithm>
#include <cstdint>

namespace outpost {

namespace {

// Length of the UTF-8 sequence at s[i], or 0 if it is not a valid one.
size_t Utf8SeqLen(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SeqLen(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SafeText(std::string_view text, size_t max_len) {
  std::string out;
  out.reserve(std::min(text.size(), max_len) + 3);
  for (size_t i = 0; i < text.size();) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    const size_t n = Utf8SeqLen(text, i);
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (n == 0) {
      out.push_back('?');
      ++i;
    } else if (n == 1 && ((c < 0x20 && c != '\t') || c == 0x7F)) {
      out.push_back('?');
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace outpost
