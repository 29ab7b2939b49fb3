// gloo's transport types, as far as ProcessGroupGloo.hpp names them (see ../../README.md):
// only through shared_ptr and unique_ptr.
#pragma once

namespace gloo {
namespace transport {

class Device;
class UnboundBuffer;

}  // namespace transport
}  // namespace gloo
