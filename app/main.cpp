// sigil: a Kubernetes validating admission webhook that admits a pod only if every image in it
// carries a cosign signature the cluster's policies trust.
#include "app/commands.hpp"

int main(int argc, char** argv) {
  return sigil::app::run(argc, argv);
}
