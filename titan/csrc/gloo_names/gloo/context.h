// gloo::Context, as far as ProcessGroupGloo.hpp names it (see ../README.md): held through
// shared_ptr; `setTimeout` is called by an inline virtual whose code libtorch emits, not titan.
#pragma once

#include <chrono>

namespace gloo {

class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};

}  // namespace gloo
