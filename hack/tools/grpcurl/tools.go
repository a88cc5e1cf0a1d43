//go:build tools

// Package tools records the grpcurl command this module pins.
package tools

import _ "github.com/fullstorydev/grpcurl/cmd/grpcurl"
