// outpostctl bundle export|import|show and artifact push|list: carried media and files by
// content (docs/operations.md, "An air-gapped site"; docs/protocol.md, "Bundles").
//
// At the hub, outpostctl assembles the volumes the hub seals record by record (no reply
// is large) and sends a site's return volumes in groups of records. With --local, the
// agent reads or writes the file through a descriptor outpostctl opened with the
// operator's own rights. `bundle show` needs neither: it reads the plaintext header and
// checks the framing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "cli/commands.h"
#include "cli/output.h"
#include "common/bundle.h"
#include "common/json_fields.h"
#include "common/trust.h"

namespace outpost::cli {

using json = nlohmann::json;

namespace {

constexpr size_t kImportGroupBytes = 4 << 20;  // raw record bytes per bundle.import request

// Replies are read like any input: a field that is absent or of another type reads as
// empty or 0, never throws.
const json& Field(const json& j, const char* k) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(k);
  return it == j.end() ? kNull : *it;
}
std::string Str(const json& j, const char* k) {
  const json& v = Field(j, k);
  return v.is_string() ? v.get<std::string>() : "";
}
uint64_t Num(const json& j, const char* k) {
  const json& v = Field(j, k);
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return 0;
}

bool ParseSize(const std::string& text, uint64_t* out) {
  if (text.empty()) return false;
  std::string num = text;
  uint64_t mult = 1;
  const char last = num.back();
  if (last == 'K' || last == 'M' || last == 'G') {
    mult = last == 'K' ? 1024 : last == 'M' ? 1024 * 1024 : uint64_t{1} << 30;
    num.pop_back();
  }
  char* end = nullptr;
  const unsigned long long v = strtoull(num.c_str(), &end, 10);
  if (num.empty() || *end != '\0' || num[0] == '-') return false;
  *out = v * mult;
  return true;
}

bool ReadWholeFile(const std::string& path, std::string* out, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = "cannot read " + path + ": " + strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool WriteAllFd(int fd, std::string_view bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string VolumePath(const std::string& out, uint32_t volume, uint32_t volumes) {
  if (volumes <= 1) return out;
  char suffix[16];
  snprintf(suffix, sizeof suffix, ".%03u", volume);
  return out + suffix;
}

json HeaderJson(const BundleHeader& h) {
  json arts = json::array();
  for (const auto& a : h.artifacts) {
    arts.push_back({{"digest", a.digest}, {"size", a.size}, {"chunks_here", a.chunks}});
  }
  char inc[20];
  snprintf(inc, sizeof inc, "%016llx", static_cast<unsigned long long>(h.incarnation));
  const bool down = h.kind == "down";
  return {{"kind", down ? "down (hub to site)" : "up (site to hub)"},
          {"site", h.site},
          {"bundle", h.id},
          {"created", FormatTime(h.created)},
          {"volume", h.volume},
          {"volumes", h.volumes},
          {"records", h.records},
          {"incarnation", inc},
          {down ? "commands" : "events", {{"first", h.first}, {"last", h.last}}},
          {down ? "events_acknowledged_through" : "commands_applied_through", h.watermark},
          {"artifacts", arts},
          {"from_key", h.from_key},
          {"to_key", h.to_key}};
}

int BundleShow(const Args& a) {
  int worst = kExitOk;
  json all = json::array();
  for (size_t i = 2; i < a.words.size(); ++i) {
    const std::string& path = a.words[i];
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      PrintError("cannot open " + path + ": " + strerror(errno));
      worst = kExitFailed;
      continue;
    }
    BundleReader reader(ReadFromFd(fd));
    Status s = reader.ReadHead();
    json j = {{"file", path}};
    if (s.ok()) {
      j.update(HeaderJson(reader.header()));
      s = reader.CheckFraming();
    }
    close(fd);
    // Only the framing: records are opened (and a flipped byte found) at import.
    j["framing"] = s.ok() ? "ok" : s.message();
    if (!s.ok()) worst = kExitUsage;
    if (!a.as_json) {
      std::cout << path << ":\n";
      for (const auto& [k, v] : j.items()) {
        if (k == "file") continue;
        std::cout << "  " << k << ": " << SafeText(v.is_string() ? v.get<std::string>() : SafeDump(v)) << "\n";
      }
    }
    all.push_back(std::move(j));
  }
  if (a.as_json) PrintJson(all);
  return worst;
}

int HubBundleExport(const Args& a, HubClient& hub) {
  if (a.site.empty() || a.out.empty()) return Usage("bundle export needs --site NAME and --out FILE");
  uint64_t volume_bytes = 0;
  if (!a.volume_size.empty() && !ParseSize(a.volume_size, &volume_bytes)) {
    return Usage("--volume-size '" + a.volume_size + "' is not a size (e.g. 700M)");
  }
  if (!a.volume_size.empty() && volume_bytes < (2 << 20)) {
    return Usage("--volume-size must be at least 2M: a volume holds whole records, and an "
                 "artifact chunk is 1 MiB");
  }
  Reply r = hub.Call({{"op", "bundle.export"}, {"site", a.site}, {"size", volume_bytes}});
  if (!r.ok()) return r.code;
  const json& b = Field(r.body, "bundle");
  const std::string id = Str(b, "id");
  json files = json::array();
  const json& vols = Field(b, "volumes");
  const uint32_t volumes = vols.is_array() ? static_cast<uint32_t>(vols.size()) : 0;
  for (const auto& v : vols) {
    const uint32_t vol = static_cast<uint32_t>(Num(v, "volume"));
    const uint32_t records = static_cast<uint32_t>(Num(v, "records"));
    const std::string path = VolumePath(a.out, vol, volumes);
    const std::string tmp = path + ".partial";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      PrintError("cannot create " + tmp + ": " + strerror(errno));
      return kExitFailed;
    }
    auto head = FromBase64(Str(v, "head"));
    bool ok = head && WriteAllFd(fd, *head);
    for (uint32_t i = 0; ok && i < records; ++i) {
      Reply rec = hub.Call({{"op", "bundle.record"}, {"id", id}, {"volume", vol}, {"index", i}});
      if (!rec.ok()) {
        close(fd);
        unlink(tmp.c_str());
        return rec.code;
      }
      auto bytes = FromBase64(Str(rec.body, "record"));
      ok = bytes && WriteAllFd(fd, *bytes);
    }
    ok = ok && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
      unlink(tmp.c_str());
      PrintError("could not write " + path + ": " + strerror(errno));
      return kExitFailed;
    }
    files.push_back(path);
  }
  json out = {{"bundle", id},
              {"site", Str(b, "site")},
              {"files", files},
              {"commands", Num(b, "commands")},
              {"events_acknowledged_through", Num(b, "events_acknowledged_through")}};
  if (a.as_json) {
    PrintJson(out);
  } else {
    std::cout << "bundle " << id << " for site " << a.site << ": " << out["commands"]
              << " command(s), " << files.size() << " volume(s):";
    for (const auto& f : files) std::cout << " " << f.get<std::string>();
    std::cout << "\n";
  }
  return kExitOk;
}

// One volume at the hub; kExitOk or the exit code (the error printed).
int HubImportOne(const Args& a, HubClient& hub, const std::string& path, json* results) {
  {
    std::string bytes, err;
    if (!ReadWholeFile(path, &bytes, &err)) {
      PrintError(err);
      return kExitFailed;
    }
    // The whole volume's framing first: one cut short is refused before anything is sent.
    BundleReader reader(ReadFromString(bytes));
    Status s = reader.ReadHead();
    const size_t head_len = reader.offset();
    if (s.ok()) s = reader.CheckFraming();
    if (!s.ok()) {
      PrintError(s.message());
      return kExitUsage;
    }
    const std::string head = bytes.substr(0, head_len);
    size_t pos = head_len;
    uint32_t index = 0;
    json last;
    uint64_t applied = 0, duplicates = 0;
    do {
      json group = json::array();
      const uint32_t first = index;
      size_t group_bytes = 0;
      while (pos + 4 <= bytes.size()) {
        const uint32_t n = (uint32_t(uint8_t(bytes[pos])) << 24) | (uint32_t(uint8_t(bytes[pos + 1])) << 16) |
                           (uint32_t(uint8_t(bytes[pos + 2])) << 8) | uint32_t(uint8_t(bytes[pos + 3]));
        if (!group.empty() && group_bytes + n > kImportGroupBytes) break;
        group.push_back(ToBase64(std::string_view(bytes).substr(pos, 4 + n)));
        group_bytes += n;
        pos += 4 + n;
        ++index;
      }
      Reply r = hub.Call({{"op", "bundle.import"}, {"head", ToBase64(head)}, {"records", group}, {"index", first}});
      if (!r.ok()) return r.code;  // what came before stays applied: import it again
      last = Field(r.body, "import").is_object() ? r.body["import"] : json::object();
      applied += Num(Field(last, "events"), "applied");
      duplicates += Num(Field(last, "events"), "duplicates");
      if (Field(last, "gap").is_object()) break;
    } while (pos < bytes.size());
    if (!last["events"].is_object()) last["events"] = json::object();
    last["events"]["applied"] = applied;
    last["events"]["duplicates"] = duplicates;
    last["file"] = path;
    if (!a.as_json) {
      std::cout << path << ": site " << Str(last, "site") << ", " << applied
                << " event(s) applied, " << duplicates << " already at the hub; hub has events through "
                << Num(Field(last, "events"), "hub_has_through") << "; commands acknowledged through "
                << Num(last, "commands_acknowledged_through") << "\n";
      if (Field(last, "gap").is_object()) {
        std::cout << "  gap: events " << Num(last["gap"], "missing_from") << ".." << Num(last["gap"], "missing_to")
                  << " are missing: import the bundle that holds them, or a newer one from the site\n";
      }
    }
    results->push_back(last);
    return Field(last, "gap").is_object() ? kExitConflict : kExitOk;
  }
}

// Every file, even after a bad one; the exit code of the first that failed.
int HubBundleImport(const Args& a, HubClient& hub) {
  json results = json::array();
  int first_failure = kExitOk;
  for (size_t i = 2; i < a.words.size(); ++i) {
    SetErrorContext(a.words[i] + ": ");
    const int code = HubImportOne(a, hub, a.words[i], &results);
    SetErrorContext("");
    if (code != kExitOk && first_failure == kExitOk) first_failure = code;
  }
  if (a.as_json) PrintJson(results);
  return first_failure;
}

}  // namespace

int BundleCommand(const Args& a, HubClient* hub, const LocalClient* agent) {
  const auto& w = a.words;
  if (w[1] == "show" && w.size() >= 3) return BundleShow(a);
  if (w[1] == "export" && w.size() == 2) {
    if (hub) return HubBundleExport(a, *hub);
    if (a.out.empty()) return Usage("bundle export needs --out FILE");
    int fd = open(a.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      PrintError("cannot create " + a.out + ": " + strerror(errno));
      return kExitFailed;
    }
    Reply r = agent->Call({{"op", "bundle.export"}}, -1, fd);
    close(fd);
    if (!r.ok()) {
      unlink(a.out.c_str());
      return r.code;
    }
    const json& b = Field(r.body, "bundle");
    if (a.as_json) {
      PrintJson(b);
    } else {
      std::cout << "return bundle " << Str(b, "id") << " in " << a.out << ": events "
                << Num(Field(b, "events"), "first") << ".." << Num(Field(b, "events"), "last")
                << ", commands applied through " << Num(b, "commands_applied_through") << "\n";
    }
    return kExitOk;
  }
  if (w[1] == "import" && w.size() >= 3) {
    if (hub) return HubBundleImport(a, *hub);
    json results = json::array();
    int first_failure = kExitOk;
    for (size_t i = 2; i < w.size(); ++i) {
      int fd = open(w[i].c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        PrintError("cannot open " + w[i] + ": " + strerror(errno));
        if (first_failure == kExitOk) first_failure = kExitFailed;
        continue;
      }
      SetErrorContext(w[i] + ": ");
      Reply r = agent->Call({{"op", "bundle.import"}}, -1, fd);
      SetErrorContext("");
      close(fd);
      if (!r.ok()) {
        // The others are still imported: a courier's bad volume does not stop the rest.
        if (first_failure == kExitOk) first_failure = r.code;
        continue;
      }
      json imp = Field(r.body, "import").is_object() ? r.body["import"] : json::object();
      imp["file"] = w[i];
      if (!a.as_json) {
        std::cout << w[i] << ": bundle " << Str(imp, "bundle") << " volume " << Num(imp, "volume") << "/"
                  << Num(imp, "volumes") << ": " << Num(Field(imp, "commands"), "applied")
                  << " command(s) taken, " << Num(Field(imp, "commands"), "refused")
                  << " of them refused by this site's checks, " << Num(Field(imp, "commands"), "duplicates")
                  << " already applied, " << Num(imp, "artifact_chunks") << " artifact chunk(s), "
                  << Num(imp, "artifacts_completed") << " artifact(s) completed\n";
      }
      results.push_back(std::move(imp));
    }
    if (a.as_json) PrintJson(results);
    return first_failure;
  }
  return Usage("bundle export|import|show");
}

int ArtifactCommand(const Args& a, HubClient* hub, const LocalClient* agent) {
  const auto& w = a.words;
  if (w[1] == "list" && w.size() == 2) {
    if (agent) {
      Reply r = agent->Call({{"op", "artifact.list"}});
      if (!r.ok()) return r.code;
      PrintJson(r.body["artifacts"]);
      return kExitOk;
    }
    Reply r = hub->Call({{"op", "artifact.list"}});
    if (!r.ok()) return r.code;
    if (a.as_json) {
      PrintJson(r.body["artifacts"]);
    } else {
      for (const auto& x : r.body["artifacts"]) {
        std::cout << Str(x, "digest") << "  " << Num(x, "size") << " bytes  " << Str(x, "name")
                  << "  sites " << SafeDump(Field(x, "sites")) << "\n";
      }
    }
    return kExitOk;
  }
  if (w[1] == "push" && w.size() == 3 && hub) {
    const std::string& path = w[2];
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      PrintError("cannot read " + path + ": " + strerror(errno));
      return kExitFailed;
    }
    // Pass 1: the chunks' digests and the file's; pass 2 sends what the hub lacks.
    std::vector<std::string> chunks;
    Blake2bStream whole;
    uint64_t size = 0;
    std::string buf(kArtifactChunkBytes, '\0');
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
      std::string_view piece(buf.data(), static_cast<size_t>(in.gcount()));
      chunks.push_back(ContentDigest(piece));
      whole.Update(piece);
      size += piece.size();
    }
    if (chunks.size() > 1024) {
      PrintError(path + " is larger than an artifact may be (1 GiB)");
      return kExitUsage;
    }
    const std::string digest = whole.HexDigest();
    Reply has = hub->Call({{"op", "artifact.has"}, {"chunks", chunks}});
    if (!has.ok()) return has.code;
    std::set<std::string> missing;
    for (const auto& m : Field(has.body, "missing")) {
      if (m.is_string()) missing.insert(m.get<std::string>());
    }
    in.clear();
    in.seekg(0);
    size_t sent = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      in.read(buf.data(), buf.size());
      std::string_view piece(buf.data(), static_cast<size_t>(in.gcount()));
      if (!missing.count(chunks[i])) continue;
      if (ContentDigest(piece) != chunks[i]) {
        PrintError(path + " changed while it was being pushed");
        return kExitFailed;
      }
      Reply r = hub->Call({{"op", "artifact.chunk"}, {"data", ToBase64(piece)}});
      if (!r.ok()) return r.code;
      missing.erase(chunks[i]);  // a chunk repeated in the file is sent once
      ++sent;
    }
    json commit = {{"op", "artifact.commit"}, {"digest", digest}, {"size", size}, {"chunks", chunks}};
    commit["name"] = a.name.empty() ? std::filesystem::path(path).filename().string() : a.name;
    Reply r = hub->Call(commit);
    if (!r.ok()) return r.code;
    if (a.as_json) {
      json j = Field(r.body, "artifact").is_object() ? r.body["artifact"] : json::object();
      j["chunks_sent"] = sent;
      PrintJson(j);
    } else {
      std::cout << digest << "\n";
      std::cerr << "outpostctl: " << path << ": " << size << " bytes, " << chunks.size() << " chunk(s), "
                << sent << " sent, " << chunks.size() - sent << " already at the hub\n";
    }
    return kExitOk;
  }
  return Usage("artifact push FILE [--name NAME] | artifact list");
}

}  // namespace outpost::cli
