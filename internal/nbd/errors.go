package nbd

import "errors"

var (
	// ErrInvalidExport means an Export given to New cannot be served: it has
	// no Backend, a negative size, a name or description the protocol cannot
	// carry, a name another export has, or a bad block size.
	ErrInvalidExport = errors.New("invalid nbd export")
	// ErrInvalidOption means an Option given to New is out of range.
	ErrInvalidOption = errors.New("invalid nbd server option")
	// ErrAddressInUse means Listen found a server answering on the unix
	// socket it was to listen on.
	ErrAddressInUse = errors.New("address in use")
)

// Errors a connection ends with. They reach only the logger and the tests.
var (
	// errProtocol means the client broke the protocol in a way the server
	// cannot answer, so it closed the connection.
	errProtocol = errors.New("client broke the nbd protocol")
	// errBadExtents means a Backend's Extents broke its contract (an extent
	// of zero or negative length).
	errBadExtents = errors.New("backend returned an invalid extent")
)
