// Key generation and Z85 checks use libzmq's CURVE helpers (plain functions over bytes,
// no sockets): the same key format the transport uses.
#include "common/keys.h"

#include <sys/stat.h>

#include <zmq.h>

#include <filesystem>
#include <fstream>

namespace outpost {
namespace {

Status ZmqError(const std::string& what) {
  return Status::IoError(what + ": " + zmq_strerror(zmq_errno()));
}


}  // namespace

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

Status WriteSecretFile(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  mode_t old = umask(0077);
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    if (!out) {
      umask(old);
      return Status::IoError("cannot write " + tmp);
    }
  }
  umask(old);
  chmod(tmp.c_str(), 0600);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IoError("rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

bool IsZ85Key(const std::string& s) {
  if (s.size() != 40) return false;
  uint8_t out[32];
  return zmq_z85_decode(out, s.c_str()) != nullptr;
}

Result<CurveKeys> GenerateCurveKeys() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) return ZmqError("curve keypair");
  return CurveKeys{pub, sec};
}

Result<CurveKeys> LoadOrCreateKeys(const std::string& dir, const std::string& name) {
  const std::string sec_path = dir + "/" + name + ".key", pub_path = dir + "/" + name + ".pub";
  std::error_code ec;
  const bool has_sec = std::filesystem::exists(sec_path, ec);
  const bool has_pub = std::filesystem::exists(pub_path, ec);
  if (has_sec != has_pub) {
    return Status::FailedPrecondition("only one of " + sec_path + " and " + pub_path +
                                      " exists; restore the other or remove both to make a new key");
  }
  if (!has_sec) {
    OUTPOST_ASSIGN_OR_RETURN(CurveKeys k, GenerateCurveKeys());
    std::filesystem::create_directories(dir, ec);
    OUTPOST_RETURN_IF_ERROR(WriteSecretFile(sec_path, k.secret_z85 + "\n"));
    std::ofstream(pub_path, std::ios::trunc) << k.public_z85 << "\n";
    return k;
  }
  struct stat st {};
  if (stat(sec_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    return Status::FailedPrecondition(sec_path + " is readable by others (mode " +
                                      std::to_string(st.st_mode & 0777) +
                                      "); chmod 600 it");
  }
  CurveKeys k{ReadFirstLine(pub_path), ReadFirstLine(sec_path)};
  if (!IsZ85Key(k.public_z85) || !IsZ85Key(k.secret_z85)) {
    return Status::Corruption("key files " + sec_path + " / " + pub_path +
                              " do not hold 40-character Z85 keys");
  }
  char derived[41];
  if (zmq_curve_public(derived, k.secret_z85.c_str()) != 0 || k.public_z85 != derived) {
    return Status::Corruption(pub_path + " does not match " + sec_path);
  }
  return k;
}

Result<std::string> ReadPublicKey(const std::string& text_or_path) {
  // A file wins: a path that happens to be 40 characters of the Z85 alphabet is still a
  // path. Only text that names no file is taken as a key.
  std::error_code ec;
  const bool is_file = std::filesystem::is_regular_file(text_or_path, ec);
  if (!is_file && IsZ85Key(text_or_path)) return text_or_path;
  std::string line = ReadFirstLine(text_or_path);
  if (line.empty()) {
    return Status::InvalidArgument("'" + text_or_path +
                                   "' is neither a 40-character Z85 key nor a readable key file");
  }
  if (!IsZ85Key(line)) {
    return Status::InvalidArgument("'" + text_or_path + "' does not hold a Z85 public key");
  }
  return line;
}

}  // namespace outpost
