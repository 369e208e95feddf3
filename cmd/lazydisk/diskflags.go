package main

import (
	"github.com/spf13/cobra"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/size"
	"github.com/lazydisk/lazydisk/verify"
)

// diskFlags are the flags of the commands that open a disk lazily (read,
// serve): which file of which image, the signature it must carry, and how
// its chunks are fetched and cached.
type diskFlags struct {
	reg         *registryOptions
	file        string
	platform    string
	cacheDir    string
	cacheSize   string
	concurrency int
	skipTOC     bool
	key         string
	sigFormat   string
}

func (d *diskFlags) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&d.file, "file", "", "the file to read (default: the single regular file under /disk/)")
	f.StringVar(&d.platform, "platform", "", "the image of an index to read (os/arch[/variant]; default: this machine's)")
	f.StringVar(&d.cacheDir, "cache-dir", "", "keep verified chunks in this directory too, for later reads and other images")
	f.StringVar(&d.cacheSize, "cache-size", size.Format(disk.DefaultCacheSize), "memory cache of verified chunks")
	f.IntVar(&d.concurrency, "concurrency", disk.DefaultConcurrency, "range requests in flight at once")
	f.BoolVar(&d.skipTOC, "insecure-skip-toc-digest", false, "read a layer that has no TOC digest annotation (its TOC is then not tied to the manifest)")
	f.StringVar(&d.key, "key", "", "require a valid cosign signature by this public key (cosign.pub) and read what it signed")
	f.StringVar(&d.sigFormat, "signature-format", string(verify.SignatureAny), "with --key, the accepted signature forms: any, bundle or legacy")
	_ = cmd.MarkFlagFilename("key", "pub")
	_ = cmd.RegisterFlagCompletionFunc("signature-format", cobra.FixedCompletions([]string{"any", "bundle", "legacy"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("platform", completePlatforms)
	_ = cmd.RegisterFlagCompletionFunc("file", cobra.NoFileCompletions)
	_ = cmd.MarkFlagDirname("cache-dir")
}

// options checks the flags of cmd and returns the disk.Open options they
// ask for, with the registry options. With --key it loads the key.
func (d *diskFlags) options(cmd *cobra.Command) ([]disk.Option, error) {
	cacheSize, err := size.Parse(d.cacheSize)
	if err != nil {
		return nil, usagef("--cache-size: %w", err)
	}
	if d.concurrency < 1 {
		return nil, usagef("--concurrency must be at least 1")
	}
	opts := []disk.Option{
		disk.WithFile(d.file), disk.WithCacheSize(cacheSize), disk.WithCacheDir(d.cacheDir),
		disk.WithConcurrency(d.concurrency),
	}
	opts = append(opts, d.reg.diskOptions()...)
	p, err := parsePlatformFlag(d.platform)
	if err != nil {
		return nil, err
	}
	if p != nil {
		opts = append(opts, disk.WithPlatform(*p))
	}
	if d.skipTOC {
		opts = append(opts, disk.WithInsecureSkipTOCDigest())
	}
	if d.key == "" {
		if cmd.Flags().Changed("signature-format") {
			return nil, usagef("--signature-format needs --key")
		}
		return opts, nil
	}
	if d.skipTOC {
		return nil, usagef("--key and --insecure-skip-toc-digest cannot be combined: the signature covers the TOC only through its digest annotation")
	}
	sf, err := verify.ParseSignatureFormat(d.sigFormat)
	if err != nil {
		return nil, usagef("--signature-format: %w", err)
	}
	v, err := loadVerifier(d.key)
	if err != nil {
		return nil, err
	}
	c, err := verify.NewChecker(v, verify.WithSignatureFormat(sf))
	if err != nil {
		return nil, err
	}
	return append(opts, disk.WithSignature(c)), nil
}

// checkStatsFlag checks --stats: empty, text or json.
func checkStatsFlag(s string) error {
	if s == "" {
		return nil
	}
	return checkTextOrJSON("stats", s)
}
