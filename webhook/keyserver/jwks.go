package keyserver

import (
	"net/http"
	"strings"

	"github.com/keyward/keyward/internal/tokens"
)

// discovery and jwks publish what a service outside the cluster needs to
// verify Keyward tokens offline.
func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	doc, err := tokens.Discovery(s.opts.Issuer, strings.TrimSuffix(s.opts.Issuer, "/")+"/.well-known/jwks.json")
	if err != nil {
		http.Error(w, "discovery unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(doc)
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	keys := s.keys.Load()
	var pubs []tokens.PublicKey
	if keys != nil {
		pubs = keys.Published
	}
	doc, err := tokens.JWKS(pubs)
	if err != nil {
		http.Error(w, "key set unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Short: relying parties must see a new key soon after rotation.
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(doc)
}
