"""Reading images and labels as users already have them."""
