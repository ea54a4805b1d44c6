// Site names, labels and label selectors: the vocabulary placement is written in.
//
// A site name is a DNS label (1-63 of a-z, 0-9 and '-', not at either end). A label key
// or value is 1-63 of letters, digits and - _ . /. A selector "k=v,k2=v2" matches a site
// that has every k=v (an empty selector matches every site).
//
// Thread-safety: free functions, no state.
#pragma once

#include <map>
#include <string>

#include "common/status.h"

namespace outpost {

bool ValidSiteName(const std::string& name);
bool ValidLabel(const std::string& s);
bool SelectorMatches(const std::map<std::string, std::string>& selector,
                     const std::map<std::string, std::string>& labels);
// "k=v,k2=v2" -> map; the error names the bad part.
Result<std::map<std::string, std::string>> ParseSelector(const std::string& text);

}  // namespace outpost
