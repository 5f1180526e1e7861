//go:build tools

// Package objectstore only pins SeaweedFS's weed command (a main package, built by build-objectstore.sh
// with `go build github.com/seaweedfs/seaweedfs/weed`) so the module graph and go.sum keep it.
package objectstore

import _ "github.com/seaweedfs/seaweedfs/weed"
