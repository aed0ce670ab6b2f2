"""EMIXER networks: generator G, image / report / joint discriminators and the image-to-report decoder F."""

from __future__ import annotations

from bundle.networks.generator import Generator
from bundle.networks.image_discriminator import ImageDiscriminator
from bundle.networks.joint_discriminator import JointDiscriminator
from bundle.networks.report_decoder import ReportDecoder
from bundle.networks.report_discriminator import ReportDiscriminator

__all__ = ["Generator", "ImageDiscriminator", "ReportDecoder", "ReportDiscriminator", "JointDiscriminator"]
