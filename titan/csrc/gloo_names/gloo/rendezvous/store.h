// gloo::rendezvous::Store, as far as ProcessGroupGloo.hpp names it (see ../../README.md): the
// base of its inline `GlooStore` adapter, which titan never constructs (libtorch does, with
// Gloo's own definition). Declared with the four virtuals `GlooStore` overrides; without
// GLOO_STORE_HAS_STORE_V2 the header leaves out the optional ones.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {
namespace rendezvous {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys,
                    const std::chrono::milliseconds& timeout) = 0;
};

}  // namespace rendezvous
}  // namespace gloo
