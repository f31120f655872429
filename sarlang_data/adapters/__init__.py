"""What other libraries see: datasets (hf), PyTorch (torch), webdataset (wds), the terminal."""
