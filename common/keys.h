// Keys: CURVE keypairs (Curve25519, written in Z85) and the files that hold them.
//
// A daemon's keypair is stored as NAME.key (the secret, mode 0600, refused when others can
// read it) and NAME.pub. These helpers do no networking: the sans-I/O cores and the CLI
// use them without depending on the ZeroMQ transport (common/transport/zmq_link.h).
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <string>

#include "common/status.h"

namespace outpost {

struct CurveKeys {
  std::string public_z85;  // 40 characters
  std::string secret_z85;
};

Result<CurveKeys> GenerateCurveKeys();
// Loads DIR/NAME.key and DIR/NAME.pub, creating them (secret 0600) if both are absent.
Result<CurveKeys> LoadOrCreateKeys(const std::string& dir, const std::string& name);
// Reads a Z85 public key from a file (first line); text that names no file and is 40 Z85
// characters is taken as the key itself.
Result<std::string> ReadPublicKey(const std::string& text_or_path);
bool IsZ85Key(const std::string& s);
// The first line of a file, without trailing spaces or CR ("" if unreadable).
std::string ReadFirstLine(const std::string& path);
// Writes a secret to PATH, mode 0600 from the start (umask), atomically (a .tmp renamed).
Status WriteSecretFile(const std::string& path, const std::string& contents);

}  // namespace outpost
