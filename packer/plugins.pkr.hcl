# Plugins used by the templates in this directory; `packer init packer/`
# downloads them. Kept in a file of its own: Packer releases older than 1.7
# do not know this block.
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
    googlecompute = {
      source  = "github.com/hashicorp/googlecompute"
      version = ">= 1.1.0"
    }
  }
}
