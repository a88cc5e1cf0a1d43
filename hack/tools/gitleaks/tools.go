//go:build tools

// Package tools records the gitleaks command this module pins.
package tools

import _ "github.com/zricethezav/gitleaks/v8"
