// app/commands.hpp: the `sigil` command line (serve, verify, version).
#pragma once

namespace sigil::app {

// Exit codes: 0 success / admitted, 1 denied, 2 usage or configuration error.
int run(int argc, char** argv);

}  // namespace sigil::app
