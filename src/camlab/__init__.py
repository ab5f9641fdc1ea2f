"""camlab: CAM and WSOL experiments."""
