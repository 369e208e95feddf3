package depcheck

// SigningAndStorage are the module paths the lazy reader and toc must not
// link: the signing stack (sigstore, rekor, TUF, grpc, which sigstore pulls
// in) and containers/storage. Embedders of the reader (FUSE daemons,
// importers, VM launchers) would pay for them in binary size and build time.
var SigningAndStorage = []string{
	"github.com/sigstore",
	"github.com/theupdateframework",
	"google.golang.org/grpc",
	"go.podman.io/storage",
	"github.com/containers/storage",
	// rekor lives under github.com/sigstore; named for the reader of a failure.
	"github.com/sigstore/rekor",
	// What the reader must not import from this module either: they link
	// the above.
	"github.com/lazydisk/lazydisk/verify",
	"github.com/lazydisk/lazydisk/sign",
	"github.com/lazydisk/lazydisk/convert",
	"github.com/lazydisk/lazydisk/internal/attach",
	"github.com/lazydisk/lazydisk/internal/validate",
}
