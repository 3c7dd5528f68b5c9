"""The inbox pages: sign-in and the room sidebar with its live deal and ticket cards."""
