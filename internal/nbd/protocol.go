package nbd

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
// Every integer on the wire is big-endian.

// Handshake magics.
//
// The server opens with nbdMagic, optMagic and 16 bits of handshake flags;
// the client answers with 32 bits of client flags. Each option the client
// then sends is optMagic, a 32-bit option, a 32-bit data length and the data.
// Each option reply (all but NBD_OPT_EXPORT_NAME's) is repMagic, the 32-bit
// option it answers, a 32-bit reply type, a 32-bit data length and the data.
const (
	nbdMagic uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic uint64 = 0x49484156454f5054 // "IHAVEOPT"
	repMagic uint64 = 0x3e889045565a9
)

// Handshake flags (server, 16 bits) and client flags (32 bits).
const (
	flagFixedNewstyle   uint16 = 1 << 0
	flagNoZeroes        uint16 = 1 << 1
	clientFixedNewstyle uint32 = 1 << 0
	clientNoZeroes      uint32 = 1 << 1
)

// Transmission flags (16 bits), sent with the export's size.
const (
	tflagHasFlags     uint16 = 1 << 0
	tflagReadOnly     uint16 = 1 << 1
	tflagSendFlush    uint16 = 1 << 2
	tflagSendDF       uint16 = 1 << 7
	tflagCanMultiConn uint16 = 1 << 8
)

// Options.
const (
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10
)

// Option reply types. Errors have bit 31 set and may carry a message.
const (
	repAck         uint32 = 1
	repServer      uint32 = 2 // 32-bit name length, name, description
	repInfo        uint32 = 3 // 16-bit info type, payload
	repMetaContext uint32 = 4 // 32-bit context ID, name
	repErrUnsup    uint32 = 1<<31 + 1
	repErrInvalid  uint32 = 1<<31 + 3
	repErrUnknown  uint32 = 1<<31 + 6
	repErrTooBig   uint32 = 1<<31 + 9
)

// Information types of NBD_REP_INFO, as requested in NBD_OPT_INFO and
// NBD_OPT_GO.
const (
	infoExport      uint16 = 0 // 64-bit size, 16-bit transmission flags
	infoName        uint16 = 1 // name
	infoDescription uint16 = 2 // description
	infoBlockSize   uint16 = 3 // 32-bit minimum, preferred and maximum block size
)

// Transmission phase magics.
//
// A request is reqMagic, 16-bit command flags, 16-bit type, 64-bit cookie,
// 64-bit offset and 32-bit length (reqHeaderLen bytes), then length bytes of
// payload for NBD_CMD_WRITE only.
//
// A simple reply is simpleReplyMagic, a 32-bit error and the 64-bit cookie
// (simpleReplyLen bytes), then the data of a successful read.
//
// A structured reply chunk is structuredReplyMagic, 16-bit flags, 16-bit
// type, the 64-bit cookie and a 32-bit payload length (chunkHeaderLen
// bytes), then the payload.
const (
	reqMagic             uint32 = 0x25609513
	simpleReplyMagic     uint32 = 0x67446698
	structuredReplyMagic uint32 = 0x668e33ef

	reqHeaderLen   = 28
	simpleReplyLen = 16
	chunkHeaderLen = 20
)

// Commands.
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7
)

// Command flags.
const (
	cmdFlagDF     uint16 = 1 << 2
	cmdFlagReqOne uint16 = 1 << 3
)

// Structured reply flags and chunk types.
//
// OFFSET_DATA is a 64-bit offset, then the data. OFFSET_HOLE is a 64-bit
// offset and a 32-bit size. BLOCK_STATUS is a 32-bit context ID, then
// (32-bit length, 32-bit flags) descriptors. ERROR is a 32-bit error, a
// 16-bit message length and the message.
const (
	replyFlagDone uint16 = 1 << 0

	replyTypeOffsetData  uint16 = 1
	replyTypeOffsetHole  uint16 = 2
	replyTypeBlockStatus uint16 = 5
	replyTypeError       uint16 = 1<<15 + 1
)

// Error values of replies.
const (
	errPerm    uint32 = 1
	errIO      uint32 = 5
	errInvalid uint32 = 22
)

// The base:allocation metadata context: one bit says a range is not
// allocated, another that it reads as zeros.
const (
	metaBaseAllocation = "base:allocation"
	metaBaseNamespace  = "base:"
	// metaBaseAllocationID is the context ID this server gives
	// base:allocation in NBD_REP_META_CONTEXT replies to
	// NBD_OPT_SET_META_CONTEXT; any value is allowed.
	metaBaseAllocationID uint32 = 1

	stateHole uint32 = 1 << 0
	stateZero uint32 = 1 << 1
)

// maxString is the longest string (export name, description, query or
// error message) the protocol allows.
const maxString = 4096
