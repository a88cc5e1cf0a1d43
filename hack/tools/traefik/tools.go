//go:build tools

// Package tools records the traefik command this module pins.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
