package mesh

import "net/http"

// setCaller names the gateway as the caller of a request it routes: by
// CallerHeader, and, with mutual TLS, by its SPIFFE ID in PeerHeader (the
// mesh authorizes by the latter only). A client's own values are
// replaced: the gateway is the edge.
func (g *Gateway) setCaller(h http.Header) {
	h.Set(CallerHeader, GatewayCaller)
	if v := g.mesh.gatewayPeer(); v != nil {
		h[PeerHeader] = v
	} else {
		delete(h, PeerHeader)
	}
}
