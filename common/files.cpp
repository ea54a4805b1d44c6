#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outpost {

namespace {

Status Errno(const std::string& what, int e) {
  if (e == ENOSPC || e == EDQUOT) return Status::ResourceExhausted(what + ": disk full");
  return Status::IoError(what + ": " + strerror(e));
}

}  // namespace

Status WriteFileAtomically(const std::string& path, std::string_view text, bool durable) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return Errno("create " + tmp, errno);
  auto fail = [&](const std::string& what) {
    const int e = errno;
    close(fd);
    unlink(tmp.c_str());
    return Errno(what + " " + tmp, e);
  };
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    done += static_cast<size_t>(n);
  }
  if (durable && fdatasync(fd) != 0) return fail("sync");
  if (close(fd) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return Errno("close " + tmp, e);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return Errno("rename " + tmp + " to " + path, e);
  }
  return Status::Ok();
}

}  // namespace outpost
