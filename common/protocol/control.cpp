#include "common/protocol/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outpost {
namespace {

Status FillAddr(const std::string& path, sockaddr_un* addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) {
    return Status::InvalidArgument("socket path '" + path + "' is longer than " +
                                   std::to_string(sizeof addr->sun_path - 1) + " bytes");
  }
  memcpy(addr->sun_path, path.c_str(), path.size());
  return Status::Ok();
}

}  // namespace

Result<int> ConnectUnix(const std::string& path) {
  sockaddr_un addr;
  OUTPOST_RETURN_IF_ERROR(FillAddr(path, &addr));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + strerror(errno));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    return Status::Unavailable("cannot reach the agent at " + path + ": " + strerror(err) +
                               " (is outpost-agent running with this --data-dir?)");
  }
  return fd;
}

Result<int> ListenUnix(const std::string& path) {
  sockaddr_un addr;
  OUTPOST_RETURN_IF_ERROR(FillAddr(path, &addr));
  // A socket file left by a killed agent is stale only if nobody answers on it.
  auto probe = ConnectUnix(path);
  if (probe.ok()) {
    close(*probe);
    return Status::AlreadyExists("another agent is already listening on " + path);
  }
  unlink(path.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + strerror(errno));
  mode_t old = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  umask(old);
  if (rc != 0 || listen(fd, 64) != 0) {
    if (rc == 0) err = errno;
    close(fd);
    return Status::IoError("bind " + path + ": " + strerror(err));
  }
  chmod(path.c_str(), 0600);
  return fd;
}

Result<nlohmann::json> ControlCall(const std::string& socket_path, const nlohmann::json& request,
                                   int timeout_ms, int pass_fd) {
  OUTPOST_ASSIGN_OR_RETURN(int fd, ConnectUnix(socket_path));
  // Text from an operator may not be UTF-8: replaced, never thrown on.
  std::string line = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  size_t off = 0;
  if (pass_fd >= 0) {
    // The descriptor rides on the first byte.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{line.data(), 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    ssize_t n;
    do {
      n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      close(fd);
      return Status::Unavailable(std::string("send to agent: ") + strerror(errno));
    }
    off = 1;
  }
  while (off < line.size()) {
    ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Status::Unavailable(std::string("send to agent: ") + strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      close(fd);
      return Status::Unavailable("the agent did not answer within " +
                                 std::to_string(timeout_ms) + " ms");
    }
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Status::Unavailable("the agent closed the connection without an answer");
    }
    in.append(buf, static_cast<size_t>(n));
    auto nl = in.find('\n');
    if (nl != std::string::npos) {
      close(fd);
      auto j = nlohmann::json::parse(in.substr(0, nl), nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return Status::Corruption("the agent sent a response that is not a JSON object");
      }
      return j;
    }
    if (in.size() > kMaxControlLine) {
      close(fd);
      return Status::ResourceExhausted("agent response longer than the line limit");
    }
  }
}

}  // namespace outpost
