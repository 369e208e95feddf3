package toc

import (
	"archive/tar"
	"io"
)

type testTar struct{ tw *tar.Writer }

func newTestTar(w io.Writer) *testTar { return &testTar{tw: tar.NewWriter(w)} }

func (t *testTar) file(name string, data []byte) {
	t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o444})
	t.tw.Write(data)
}

func (t *testTar) close() { t.tw.Close() }
