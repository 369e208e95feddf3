package disk

// ChunkBounds returns where the file's chunks start, and its size, for
// tests that read across chunk boundaries.
func ChunkBounds(f *File) []int64 {
	var out []int64
	for _, c := range f.fetch.chunks {
		out = append(out, c.Offset)
	}
	return append(out, f.size)
}

// CompressedSizes returns the compressed size of each chunk, 0 for zero chunks.
func CompressedSizes(f *File) []int64 {
	var out []int64
	for _, c := range f.fetch.chunks {
		if c.Zero {
			out = append(out, 0)
			continue
		}
		out = append(out, c.CompressedSize)
	}
	return out
}
