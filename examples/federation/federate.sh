#!/bin/sh
# Federates zone-a and zone-b of this example on one machine: each zone's mesh-sds runs with a
# bundle endpoint, and each gets ONE ClusterFederatedTrustDomain naming the other (its bootstrap
# bundle taken once with export-trust). After that, CA rolls propagate by themselves.
#
#   npx mesh-sds serve --zone zone-a --resources zone-a --state-dir /tmp/zone-a-state --listen 127.0.0.1:15443 --auth none --bundle-endpoint 127.0.0.1:8443 &
#   npx mesh-sds serve --zone zone-b --resources zone-b --state-dir /tmp/zone-b-state --listen 127.0.0.1:15444 --auth none --bundle-endpoint 127.0.0.1:8444 &
#   sh federate.sh
#
# Other bundle-endpoint addresses or state folders (the same ones the two servers were given):
#   ZONE_A_BUNDLE_ENDPOINT=127.0.0.1:9443 ZONE_B_BUNDLE_ENDPOINT=127.0.0.1:9444 STATE_DIR_PREFIX=/var/tmp/ sh federate.sh
# (zone X's state folder is ${STATE_DIR_PREFIX}zone-X-state; the default prefix is /tmp/).
set -eu
cd "$(dirname "$0")"
# The repository's own CLI unless MESH_SDS names another (e.g. an installed mesh-sds).
MESH_SDS=${MESH_SDS:-"node $(cd ../.. && pwd)/bin/mesh-sds.js"}
ZONE_A_BUNDLE_ENDPOINT=${ZONE_A_BUNDLE_ENDPOINT:-127.0.0.1:8443}
ZONE_B_BUNDLE_ENDPOINT=${ZONE_B_BUNDLE_ENDPOINT:-127.0.0.1:8444}
STATE_DIR_PREFIX=${STATE_DIR_PREFIX:-/tmp/}

federate() { # <this zone> <other zone> <other zone's bundle endpoint>
  td="default.$2.mesh.local"
  bundle=$($MESH_SDS export-trust --mesh default --trust-domain "$td" --format spiffe-bundle \
    --zone "$2" --resources "$2" --state-dir "${STATE_DIR_PREFIX}$2-state")
  {
    echo "apiVersion: spire.spiffe.io/v1alpha1"
    echo "kind: ClusterFederatedTrustDomain"
    echo "metadata:"
    echo "  name: $2"
    echo "spec:"
    echo "  trustDomain: $td"
    echo "  bundleEndpointURL: https://$3/$td"
    echo "  bundleEndpointProfile:"
    echo "    type: https_spiffe"
    echo "    endpointSPIFFEID: spiffe://$td/mesh-sds/bundle-endpoint"
    echo "  trustDomainBundle: |"
    echo "$bundle" | sed 's/^/    /'
  } > "$1/.federation.yaml.tmp"
  mv "$1/.federation.yaml.tmp" "$1/federation.yaml"
  $MESH_SDS validate "$1/federation.yaml"
}

federate zone-a zone-b "$ZONE_B_BUNDLE_ENDPOINT"
federate zone-b zone-a "$ZONE_A_BUNDLE_ENDPOINT"
